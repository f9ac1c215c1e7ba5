"""Found by review: a reload revokes a user whose group membership changed, but only their
open connections: the names cache (60 s) lets the same user straight back in."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import trio

from pagerd.access.peers import Peer
from pagerd.config import load
from tests.test_access import CLIENT, _config, _lines, needs_root

member = {"value": True}


def fake_resolve(peer: Peer, with_groups: bool) -> Peer:
    """NSS as a directory would answer: nobody is in group 'oncall' while `member`."""
    groups = frozenset({"nogroup", "staff"} if member["value"] else {"nogroup"})
    return attrs.evolve(peer, user="nobody", groups=groups if with_groups else frozenset())


async def _client(config_socket: Path) -> trio.Process:
    return await trio.lowlevel.open_process(
        ["/usr/bin/python3", "-c", CLIENT, str(config_socket)],
        user="nobody", group="nogroup", extra_groups=[], stdin=-1, stdout=-1,
    )  # fmt: skip


@needs_root
async def test_a_user_revoked_at_reload_cannot_reconnect_at_once(
    open_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pagerd.front import names, server

    monkeypatch.setattr(names, "resolve", fake_resolve)
    monkeypatch.setattr(server, "resolve", fake_resolve)
    member["value"] = True
    path = open_folder / "pager.toml"
    path.write_text(_config(open_folder, 'allow_groups = ["staff"]'))
    config = load(path)
    from tests.harness import running

    with trio.fail_after(30):
        async with running(config, offload=None) as daemon:
            config.socket.chmod(0o666)
            first = await _client(config.socket)
            assert first.stdout is not None and first.stdin is not None
            (line,) = await _lines(first.stdout, 1)
            assert json.loads(line)["ok"] is True
            # The operator takes nobody out of group oncall, and reloads.
            member["value"] = False
            assert await daemon.reload() is True
            await first.stdin.send_all(b"go\n")
            rest = await _lines(first.stdout, 2)
            assert json.loads(rest[0])["error"]["code"] == "forbidden"  # revoked: as documented
            first.kill()
            await first.wait()
            # A second later, nobody connects again.
            second = await _client(config.socket)
            assert second.stdout is not None
            (again,) = await _lines(second.stdout, 1)
            second.kill()
            await second.wait()
    reply = json.loads(again)
    assert reply.get("ok") is not True, (
        f"revoked at the reload, yet let straight back in (cached groups): {reply}"
    )


async def test_a_lookup_under_way_at_a_reload_is_not_trusted_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collections.abc import Callable
    from typing import TypeVar

    import trio.testing

    from pagerd.front import names as names_module
    from pagerd.front.names import Names

    T = TypeVar("T")
    answers = iter([frozenset({"staff"}), frozenset({"nogroup"})])  # before, after the change
    calls: list[int] = []
    gate = trio.Event()

    def directory(peer: Peer, with_groups: bool) -> Peer:
        calls.append(1)
        return attrs.evolve(peer, user="nobody", groups=next(answers))

    async def offload(fn: Callable[[], T]) -> T:
        if not calls:
            await gate.wait()  # the first lookup is slow: a reload comes meanwhile
        return fn()

    monkeypatch.setattr(names_module, "resolve", directory)
    names = Names(offload)
    peer = Peer(pid=10, uid=65534, gid=65534)
    found: list[Peer] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(names.run)

        async def connection() -> None:
            found.append(await names.of(peer, True, restricted=True))

        nursery.start_soon(connection)
        await trio.testing.wait_all_tasks_blocked()
        names.forget()  # the reload: membership changed
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert found[0].groups == frozenset({"nogroup"})  # looked up again, not the stale answer
    assert len(calls) == 2
