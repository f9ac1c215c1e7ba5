"""Fixtures shared by the tests that start the real `pagerd` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import CONFIG, Pagerd


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Pagerd]:
    """A `pagerd` on the two-service config (not started: the test starts it)."""
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    d = Pagerd(config, tmp_path / "run" / "pager.sock", tmp_path / "pagerd.log")
    try:
        yield d
    finally:
        d.stop()
