"""Fixtures shared by the tests: the daemon's config, and a real `pagerd` process."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagerd.config import Config
from tests import http_clients
from tests.harness import write_config
from tests.processes import CONFIG, Pagerd


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The harness config: services api and web, two levels (5 and 15 minutes), log transport."""
    return write_config(tmp_path)


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


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder user nobody can reach (pytest's own temporary folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="pagerd-access-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture(params=http_clients.KINDS)
def either_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's HTTP transports post with httpx, then (a second run) with libcurl: see
    tests/http_clients.py."""
    http_clients.choose(request.param)
    try:
        yield request.param
    finally:
        http_clients.choose("httpx")


@pytest.fixture(params=[0, None], ids=["in-process", "workers"])
def delivery_workers(request: pytest.FixtureRequest) -> int | None:
    """Where a daemon on the real clock sends the test's pages: in its own process (0), then (a
    second run) through the delivery worker processes as configured by default (None: one a
    core, real processes). For the tests of what a page carries end to end: reply codes,
    buttons, links, templates."""
    value: int | None = request.param
    return value
