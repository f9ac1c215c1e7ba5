"""Where systemd's sandbox hid what pagerd relies on (found by review): `PrivateUsers=yes` made
every client "nobody" to `SO_PEERCRED` (the access lists turned all away), and `ProcSubset=pid`
hid the boot id (restarts silently trusted the wall clock). The unit no longer sets either, and
pagerd says so at start if it meets them anyway."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd import app
from pagerd.access import peers
from pagerd.access.peers import Access, namespace_problem, unmapped_peers
from pagerd.config import load
from pagerd.timing import clock
from pagerd.timing.clock import Clock, boot_warning
from tests.harness import CHANNELS, ONCALL, T0, running

ROOT = Path(__file__).resolve().parent.parent
HOST = "         0          0 4294967295\n"
PRIVATE_USERS = "         0          0          1\n       999        999          1\n"
REMAPPED = "         0     100000      65536\n"  # a container's own range: its users are apart


def test_the_unit_sets_neither_private_users_nor_proc_subset() -> None:
    settings = [
        line.split("=", 1)[0]
        for line in (ROOT / "config" / "pagerd.service").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert "PrivateUsers" not in settings
    assert "ProcSubset" not in settings


@pytest.mark.parametrize(
    ("uid_map", "unmapped"),
    [(HOST, False), (REMAPPED, False), (None, False), ("garbage", False), (PRIVATE_USERS, True)],
)
def test_a_namespace_that_maps_only_a_few_users_is_told(
    uid_map: str | None, unmapped: bool
) -> None:
    assert unmapped_peers(uid_map) is unmapped


def test_access_lists_are_refused_where_every_client_would_be_nobody() -> None:
    users = Access(users=frozenset({"alice"}))
    groups = Access(groups=frozenset({"oncall"}))
    for access in (users, groups):
        problem = namespace_problem(access, PRIVATE_USERS)
        assert problem is not None and "PrivateUsers" in problem and "\n" not in problem
        assert namespace_problem(access, HOST) is None
    assert namespace_problem(Access(), PRIVATE_USERS) is None  # nobody is told apart anyway


async def test_pagerd_refuses_to_start_with_access_lists_in_such_a_namespace(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "uid_map").write_text(PRIVATE_USERS)
    monkeypatch.setattr(peers, "UID_MAP", tmp_path / "uid_map")
    path = tmp_path / "pager.toml"
    text = CHANNELS + ONCALL + '\n[services.api]\npolicy = "oncall"\n'
    allow = 'state_dir = "state"\nallow_users = ["root"]'
    path.write_text(text.replace('state_dir = "state"', allow))
    config = load(path)
    with (
        trio.fail_after(60),
        pytest.raises(app.StartupError, match="allow_users / allow_groups cannot work here"),
    ):
        await app.serve(config, trio.Event(), clock=Clock(T0))
    assert not config.socket.exists()  # nothing left listening
    (tmp_path / "uid_map").write_text(HOST)
    async with running(config):
        pass


def test_an_unreadable_boot_id_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert boot_warning(lambda: ("b0", 1.0)) is None
    monkeypatch.setattr(clock, "BOOT_ID", tmp_path / "absent")
    warning = boot_warning()
    assert warning is not None and "ProcSubset=pid" in warning and "wall clock" in warning


async def test_pagerd_warns_at_start_when_the_boot_id_cannot_be_read(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(clock, "BOOT_ID", tmp_path / "absent")
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS + ONCALL + '\n[services.api]\npolicy = "oncall"\n')
    config = load(path)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(app.serve, config, stop)  # its own clock, as the real daemon's
        stop.set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("restarts will trust the wall clock" in w for w in warnings), warnings


async def test_a_reload_that_sets_access_lists_in_such_a_namespace_is_rejected(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pager.toml"
    text = CHANNELS + ONCALL + '\n[services.api]\npolicy = "oncall"\n'
    path.write_text(text)
    config = load(path)
    (tmp_path / "uid_map").write_text(PRIVATE_USERS)
    monkeypatch.setattr(peers, "UID_MAP", tmp_path / "uid_map")
    with trio.fail_after(60):
        async with running(config) as daemon:  # no access lists: nothing to refuse
            allow = 'state_dir = "state"\nallow_groups = ["root"]'
            path.write_text(text.replace('state_dir = "state"', allow))
            errors = await daemon.try_reload()
            access = daemon.server.access
    assert len(errors) == 1 and "cannot work here" in errors[0]
    assert not access.restricted  # the previous config still runs
