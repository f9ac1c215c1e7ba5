"""The group commit: one waiter's bad write refuses that waiter's events, not those of every
other actor that shared its transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from pager.domain import Alert, Level, Policy, ServiceState, Target, decide
from pager.shards import SHARDS, shard_of
from pagerd.storage.commits import Committer, Term
from pagerd.storage.port import Attempt, Fence, StoreError, StoreUnavailable, Transition, Write
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


async def test_a_refused_write_tells_its_waiter_the_kind_of_error_not_its_text(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal reaches a client (`unavailable`): a bug's exception text may quote what was
    written (a webhook's secret URL), SQLite's does not."""
    store = Store.open(tmp_path / "pager.db")
    committer = Committer(store, _slow)

    def failing(batch: Sequence[Write]) -> None:
        raise ValueError("cannot encode https://hooks.example.com/SECRET")

    monkeypatch.setattr(store, "write", failing)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as writer:
                writer.start_soon(committer.run)
                with pytest.raises(StoreError) as refused:
                    await committer.commit([_opened("api")])
                writer.cancel_scope.cancel()
    finally:
        store.close()
    assert "SECRET" not in str(refused.value)
    assert "ValueError" in str(refused.value)


class Fencing:
    """A node's leases as the committer sees them: every shard held; what it was told."""

    def __init__(self) -> None:
        self.reloaded: list[frozenset[int]] = []
        self.lost: list[frozenset[int]] = []

    def fence(self) -> Fence:
        return Fence("a", dict.fromkeys(range(SHARDS), 1), "run-a")

    def terms(self, shards: Collection[int]) -> dict[int, Term]:
        return {s: Term(1, 1) for s in shards}

    def lose(self, shards: Collection[int]) -> None:
        self.lost.append(frozenset(shards))

    def reload(self, shards: Collection[int]) -> None:
        self.reloaded.append(frozenset(shards))

    def raised(self, shards: Collection[int], fence: Fence) -> frozenset[int]:
        return frozenset()


@pytest.mark.parametrize(
    ("error", "reloads"),
    [
        (StoreUnavailable("server closed the connection unexpectedly"), True),
        (StoreError("bad"), False),
    ],
)
async def test_a_write_of_unknown_outcome_has_its_shards_reloaded_before_anyone_hears(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    reloads: bool,
) -> None:
    """On a shared store a lost connection during COMMIT leaves the batch written or not:
    the shards it touched (its transitions' services', and those a waiter names) are
    reloaded, before any waiter is told and decides again. A write refused for what it holds
    was rolled back: nothing to reload."""
    store = Store.open(tmp_path / "pager.db")
    committer = Committer(store, _slow)
    fencing = Fencing()
    committer.fencing = fencing

    def failing(batch: Sequence[Write], fence: Fence | None = None) -> None:
        raise error

    monkeypatch.setattr(store, "write", failing)
    told: list[list[frozenset[int]]] = []

    async def commit(name: str, shards: Collection[int] = ()) -> None:
        with pytest.raises(StoreError):
            await committer.commit([_opened(name)], shards=shards)
        told.append(list(fencing.reloaded))  # what had been reloaded when it heard

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as writer:
                writer.start_soon(committer.run)
                async with trio.open_nursery() as actors:
                    actors.start_soon(commit, "api")
                    actors.start_soon(commit, "web", [200])
                writer.cancel_scope.cancel()
    finally:
        store.close()
    touched = frozenset({shard_of("api"), shard_of("web"), 200})
    assert fencing.reloaded == ([touched] if reloads else [])
    assert told == ([[touched], [touched]] if reloads else [[], []])
    assert fencing.lost == []


async def test_a_write_of_unknown_outcome_that_only_records_deliveries_reloads_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of delivery records alone leaves no state in memory at stake (the outbox
    retries the record): its shards are not reloaded, and a decision's in the same batch
    still are."""
    store = Store.open(tmp_path / "pager.db")
    committer = Committer(store, _slow)
    fencing = Fencing()
    committer.fencing = fencing

    def failing(batch: Sequence[Write], fence: Fence | None = None) -> None:
        raise StoreUnavailable("server closed the connection unexpectedly")

    monkeypatch.setattr(store, "write", failing)
    record = Attempt("api#1/1/1/email:alice@example.com", T0, "sent", None, None)

    async def commit(writes: Sequence[Write], shards: Collection[int]) -> None:
        with pytest.raises(StoreError):
            await committer.commit(writes, shards=shards)

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as writer:
                writer.start_soon(committer.run)
                await commit([record], [shard_of("api")])
                assert fencing.reloaded == []
                async with trio.open_nursery() as actors:
                    actors.start_soon(commit, [record], [shard_of("api")])
                    actors.start_soon(commit, [_opened("web")], ())
                writer.cancel_scope.cancel()
    finally:
        store.close()
    assert fencing.reloaded == [frozenset({shard_of("web")})]
