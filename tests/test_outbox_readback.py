"""The outbox's read-back of rows that were only in the database, against a fake store whose
query the test holds open: a notification refused for want of room while the query runs was
committed after its snapshot, and must still be read later, not left in the database unseen.
(Fakes of our own ports; MockClock.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import trio
import trio.testing

from pager.domain import Notify, Target
from pagerd.config.channels import Channel
from pagerd.delivery.outbox import LaneSpec, Outbox
from pagerd.storage.port import Attempt, Undelivered, Write
from pagerd.timing.clock import Clock
from tests.harness import T0
from tests.test_outbox import Scripted

T = TypeVar("T")


def note(i: int) -> Notify:
    return Notify("api", i, 1, 1, Target("email", f"u{i}@example.com"), "down", T0)


class Database:
    """The outbox rows, and the fake store and committer over them."""

    origin = "0123456789abcdef"  # the run's identity, as the real store has one

    def __init__(self) -> None:
        self.rows: dict[str, Notify] = {}  # undelivered, in order
        self.hold: trio.Event | None = None  # while set, a read-back query is held open
        self.reading = trio.Event()

    # Store
    def undelivered(
        self, limit: int, channel: str | None = None, due_by: float | None = None
    ) -> list[Undelivered]:
        return [
            Undelivered(n, T0, 0, None)
            for n in list(self.rows.values())[:limit]
            if channel in (None, n.target.channel)
        ]

    def failed_counts(self) -> dict[tuple[str, int], int]:
        return {}

    def next_retry_at(self, channel: str, after: float) -> float | None:
        return None  # no row here has a retry time

    # Committer
    async def commit(self, writes: Sequence[Write]) -> None:
        for w in writes:
            if isinstance(w, Attempt) and w.outcome != "retrying":
                self.rows.pop(w.id, None)
        await trio.lowlevel.checkpoint()

    # Offload: runs the query, then (when asked) holds its result while others run.
    async def offload(self, fn: Callable[[], T]) -> T:
        result = fn()
        if self.hold is not None and getattr(fn, "__name__", "") == "<lambda>":
            self.reading.set()
            await self.hold.wait()
        await trio.lowlevel.checkpoint()
        return result


async def test_a_row_refused_while_a_read_back_runs_is_read_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = Database()
    email = Scripted()
    channel = Channel("email", "smtp", timeout=60.0, concurrency=1, rate=1000.0, burst=100)
    outbox = Outbox(
        db,  # type: ignore[arg-type]
        db,  # type: ignore[arg-type]
        {"email": LaneSpec(channel, email)},
        db.offload,
        Clock(T0),
        capacity=2,
    )
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            db.hold = trio.Event()
            nursery.start_soon(outbox.run)
            await db.reading.wait()  # the start's read-back: its snapshot is taken, empty
            late = [note(i) for i in range(1, 4)]
            for n in late:  # committed after the snapshot, handed over while it runs
                db.rows[n.id] = n
            outbox.add(late)  # room for two: the third is refused, left in the database
            db.hold.set()
            db.hold = None
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
    assert sorted(email.sent) == sorted(n.id for n in late)
    assert db.rows == {}
