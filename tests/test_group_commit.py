"""The group commit: one waiter's bad write refuses that waiter's events, not those of every
other actor that shared its transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from pager.domain import Alert, Level, Policy, ServiceState, Target, decide
from pagerd.storage.commits import Committer
from pagerd.storage.port import StoreError, StoreUnavailable, Transition, Write
from pagerd.storage.sqlite.store import Store
from tests.harness import T0

T = TypeVar("T")
POLICY = Policy((Level((Target("email", "alice@example.com"),), 300.0),))


def _opened(name: str) -> Transition:
    before = ServiceState(name)
    after, notes = decide(before, Alert("down"), T0, POLICY)
    return Transition(before, after, notes, T0)


async def _slow(fn: Callable[[], T]) -> T:
    await trio.sleep(0.01)
    return fn()


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (StoreError("a bad row"), {"bad"}),
        (ValueError("cannot encode"), {"bad"}),
        # The disk itself: the whole group is refused, and not written again one by one.
        (StoreUnavailable("disk I/O error"), {"first", "bad", "good"}),
    ],
)
async def test_a_bad_write_refuses_its_own_commit_not_the_rest_of_its_group(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    refused: set[str],
) -> None:
    store = Store.open(tmp_path / "pager.db")
    committer = Committer(store, _slow)
    write = store.write
    groups: list[list[str]] = []

    def failing(batch: Sequence[Write]) -> None:
        names = [w.after.name for w in batch if isinstance(w, Transition)]
        groups.append(names)
        if "bad" in names:
            raise error
        write(batch)

    monkeypatch.setattr(store, "write", failing)
    outcomes: dict[str, str] = {}

    async def commit(name: str) -> None:
        try:
            await committer.commit([_opened(name)])
            outcomes[name] = "ok"
        except StoreError:
            outcomes[name] = "refused"

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as writer:
                writer.start_soon(committer.run)
                async with trio.open_nursery() as actors:
                    for name in ("first", "bad", "good"):
                        actors.start_soon(commit, name)
                writer.cancel_scope.cancel()
    finally:
        store.close()
    assert sorted(groups[0]) == ["bad", "first", "good"]  # they did share a transaction
    assert {name for name, outcome in outcomes.items() if outcome == "refused"} == refused
    assert committer.statistics().failures == 1
    if len(refused) > 1:
        assert len(groups) == 1  # a failing disk is not tried once more for each waiter
