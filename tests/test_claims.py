"""A claim (one task deciding many idle services' events together, see `pagerd.actors`) is one
waiter of the group commit: a row the database refuses for one of its services must refuse that
service's events only, not every other service's in the claim."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd.storage.port import Transition, Write
from tests.harness import connect, json_line, notifications, running, settle, write_config

SERVICES = ("a", "bad", "b", "c")


async def test_a_refused_row_in_a_claim_refuses_only_its_own_service(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, services={name: "oncall" for name in SERVICES})
    groups: list[list[str]] = []
    with trio.fail_after(600):
        async with running(config) as daemon, connect(config.socket) as conn:
            write = daemon.store.write

            def refusing(batch: Sequence[Write]) -> None:
                names = [w.after.name for w in batch if isinstance(w, Transition)]
                groups.append(names)
                if "bad" in names:
                    raise sqlite3.IntegrityError("CHECK constraint failed")
                write(batch)

            monkeypatch.setattr(daemon.store, "write", refusing)
            # One read of the socket: every service is idle, so one claim decides them all.
            await conn.send(
                b"".join(json_line({"op": "alert", "service": name}) for name in SERVICES)
            )
            replies = {name: await conn.receive() for name in SERVICES}
            await settle()
            monkeypatch.undo()
            status = await conn.request("status")
    assert sorted(groups[0]) == sorted(SERVICES)  # the claim did commit them together
    assert replies["bad"]["error"]["code"] == "unavailable"
    assert {name for name, reply in replies.items() if reply["ok"]} == {"a", "b", "c"}
    states = {s["service"]: s["state"] for s in status["services"]}
    assert states == {"a": "unhealthy", "bad": "healthy", "b": "unhealthy", "c": "unhealthy"}
    paged = {n["service"] for n in notifications(config)}
    assert paged == {"a", "b", "c"}
