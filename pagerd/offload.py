"""Running blocking calls (sqlite3, file writes) without blocking the event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

T = TypeVar("T")


class Offload(Protocol):
    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


def in_thread(limiter: trio.CapacityLimiter) -> Offload:
    """Run each call in a worker thread, at most `limiter` at once."""

    async def offload(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=limiter)

    return offload


async def inline(fn: Callable[[], T]) -> T:
    """Run the call on the loop itself: for tests under `MockClock`, where no time may pass
    while a thread works (the autojump would otherwise fire timers during a commit)."""
    await trio.lowlevel.checkpoint()
    return fn()
