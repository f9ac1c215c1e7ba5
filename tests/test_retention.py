"""Pruning history past `daemon.keep_history`: what goes, what always stays, in short steps.

The daemon-level behaviour (a reload turns it on, numbers continue) is in test_operations.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pagerd.storage import retention
from pagerd.storage.offload import inline
from pagerd.storage.port import Pruned, StoreUnavailable
from pagerd.storage.sqlite.schema import SCHEMA_VERSION
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock
from tests.history import incident, rows_of

T = TypeVar("T")
OLD, CUTOFF, RECENT = 100.0, 1000.0, 2000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "pager.db")
    yield store
    store.close()


# Names whose notification ids share prefixes ("a#1/..." and "a#10/...", "a" and "a.b"), numbers
# with gaps (an earlier pass pruned some), every notification state.
_incident_rows = st.fixed_dictionaries(
    {
        "closed_at": st.sampled_from([OLD, CUTOFF - 1, CUTOFF, RECENT]),
        "events": st.integers(0, 3),
        "notifications": st.lists(st.sampled_from(["sent", "failed", "pending", "retrying"])),
        "attempts": st.integers(0, 2),
    }
)
_services = st.dictionaries(
    st.sampled_from(["a", "a.b", "a-", "b"]),
    st.tuples(
        st.dictionaries(st.sampled_from([1, 2, 3, 10, 11, 12]), _incident_rows, min_size=1),
        st.booleans(),  # the latest is open
    ),
    min_size=1,
)


@settings(max_examples=150, deadline=None)
@given(services=_services, budget=st.integers(1, 30))
def test_exactly_what_may_go_goes_and_nothing_else_is_touched(
    tmp_path_factory: pytest.TempPathFactory,
    services: dict[str, tuple[dict[int, dict[str, Any]], bool]],
    budget: int,
) -> None:
    with closing(Store.open(tmp_path_factory.mktemp("prune") / "pager.db")) as store:
        store._conn.execute("PRAGMA synchronous=OFF")  # durability is not what this is about
        expected: dict[tuple[str, int], list[int]] = {}
        for service, (numbers, latest_open) in services.items():
            for number, row in sorted(numbers.items()):
                latest = number == max(numbers)
                closed_at = None if latest and latest_open else row["closed_at"]
                incident(
                    store,
                    service,
                    number,
                    closed_at,
                    row["events"],
                    tuple(row["notifications"]),
                    row["attempts"],
                )
                n = len(row["notifications"])
                goes = (
                    closed_at is not None
                    and closed_at < CUTOFF
                    and not latest
                    and not {"pending", "retrying"} & set(row["notifications"])
                )
                expected[(service, number)] = (
                    [0, 0, 0, 0] if goes else [1, row["events"], n, n * row["attempts"]]
                )
        pruned_incidents = 0
        resume: tuple[float, int] | None = (float("-inf"), 0)
        while resume is not None:
            pruned = store.prune(CUTOFF, resume, budget)
            assert pruned.rows <= budget
            pruned_incidents += pruned.incidents
            resume = pruned.resume
        assert {key: rows_of(store, *key) for key in expected} == expected
        assert pruned_incidents == sum(rows == [0, 0, 0, 0] for rows in expected.values())


def test_a_large_incident_goes_in_short_transactions_its_own_row_last(store: Store) -> None:
    incident(store, "api", 1, OLD, events=25, notifications=("sent", "failed"), attempts=3)
    incident(store, "api", 2, OLD)  # api's latest
    steps = []
    resume: tuple[float, int] | None = (float("-inf"), 0)
    while resume is not None:
        pruned = store.prune(CUTOFF, resume, budget=10)
        steps.append((pruned.rows, pruned.incidents, rows_of(store, "api", 1)[0]))
        resume = pruned.resume
    # 25 events, 6 attempts, 2 notifications, then the incident: 34 rows, 10 at a time at most,
    # and the incident's row stays until everything else of it is gone.
    assert steps == [(10, 0, 1), (10, 0, 1), (10, 0, 1), (4, 1, 0)]
    assert rows_of(store, "api", 1) == [0, 0, 0, 0]
    assert rows_of(store, "api", 2) == [1, 2, 1, 1]


def test_kept_whatever_their_age(store: Store) -> None:
    incident(store, "api", 1, OLD)  # old, and neither latest nor undelivered: pruned
    incident(store, "api", 2, None)  # open
    incident(store, "web", 1, OLD, notifications=("sent", "retrying"))  # a page still to go
    incident(store, "web", 2, OLD, notifications=("pending",))
    incident(store, "web", 3, RECENT)  # closed after the cutoff
    incident(store, "db", 1, OLD)  # old, but db's latest: its next incident is db#2
    pruned = store.prune(CUTOFF)
    assert (pruned.incidents, pruned.resume) == (1, None)
    assert rows_of(store, "api", 1) == [0, 0, 0, 0]
    assert rows_of(store, "api", 2) == [1, 2, 1, 1]
    assert rows_of(store, "web", 1) == [1, 2, 2, 2]
    assert rows_of(store, "web", 2) == [1, 2, 1, 1]
    assert rows_of(store, "web", 3) == [1, 2, 1, 1]
    assert rows_of(store, "db", 1) == [1, 2, 1, 1]
    assert store.load_states()["db"].last_incident == 1


def test_a_pass_moves_on_past_incidents_it_keeps(store: Store) -> None:
    # Twelve services whose only incident is old: each is kept, and a pass with a budget of
    # five looks at each once, in order, and reaches the one it can delete after them.
    for k in range(12):
        incident(store, f"svc-{k}", 1, OLD + k)
    incident(store, "api", 1, OLD + 20)
    incident(store, "api", 2, None)
    calls = []
    resume: tuple[float, int] | None = (float("-inf"), 0)
    while resume is not None:
        pruned = store.prune(CUTOFF, resume, budget=5)
        calls.append(pruned.incidents)
        resume = pruned.resume
    assert calls == [0, 0, 1]
    assert rows_of(store, "api", 1) == [0, 0, 0, 0]
    assert all(rows_of(store, f"svc-{k}", 1)[0] == 1 for k in range(12))


async def test_a_pass_deletes_until_done_and_logs_what_it_did(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    for number in range(1, 8):
        incident(store, "api", number, OLD + number, events=400)
    caplog.set_level(logging.INFO, logger="pagerd.retention")
    assert await retention.prune(store, inline, CUTOFF) == 6  # api#7 is the latest
    assert [rows_of(store, "api", n)[0] for n in range(1, 8)] == [0] * 6 + [1]
    # 6 x (400 events, a notification, its attempt, the incident): more than one transaction
    assert "incidents=6 rows=2418" in caplog.text


async def test_a_failing_pass_is_logged_and_leaves_the_rest_for_the_next(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    incident(store, "api", 1, OLD)
    incident(store, "api", 2, OLD)

    async def disk_full(fn: Callable[[], T]) -> T:
        raise StoreUnavailable("database or disk is full")

    assert await retention.prune(store, disk_full, CUTOFF) == 0
    assert "pruning history failed" in caplog.text and "disk is full" in caplog.text
    assert rows_of(store, "api", 1) == [1, 2, 1, 1]
    assert await retention.prune(store, inline, CUTOFF) == 1


def test_a_version_1_database_is_upgraded_with_its_history(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "pager.db")
    incident(store, "api", 1, OLD)
    store._conn.executescript(  # as the previous pagerd left it
        "DROP INDEX incidents_closed; PRAGMA user_version = 1;"
    )
    store.close()
    store = Store.open(tmp_path / "pager.db")
    try:
        version = store._conn.execute("PRAGMA user_version").fetchone()[0]
        plan = store._conn.execute(
            "EXPLAIN QUERY PLAN SELECT rowid FROM incidents WHERE closed_at < 1"
        ).fetchall()
        assert version == SCHEMA_VERSION
        assert "incidents_closed" in str(plan)
        assert rows_of(store, "api", 1) == [1, 2, 1, 1]
    finally:
        store.close()


async def test_a_bug_in_a_pass_is_reported_and_the_next_pass_runs(
    autojump_clock: trio.testing.MockClock,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    incident(store, "api", 1, OLD)
    incident(store, "api", 2, OLD)
    prune, calls = store.prune, []

    def broken_once(*args: Any) -> Pruned:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return prune(*args)

    monkeypatch.setattr(store, "prune", broken_once)
    clock = Clock(CUTOFF)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(retention.keep_history, store, inline, clock, lambda: 1.0)
        await trio.sleep(retention.FIRST_PASS_AFTER + 1)
        assert "pruning history failed" in caplog.text and "RuntimeError: a bug" in caplog.text
        assert rows_of(store, "api", 1)[0] == 1
        await trio.sleep(retention.PASS_EVERY)
        nursery.cancel_scope.cancel()
    assert rows_of(store, "api", 1) == [0, 0, 0, 0]
