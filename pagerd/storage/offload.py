"""Running blocking calls (sqlite3, file writes) without blocking the event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import trio

if TYPE_CHECKING:
    from outcome import Outcome

T = TypeVar("T")


class Offload(Protocol):
    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


def in_thread(limiter: trio.CapacityLimiter, *, abandon_on_cancel: bool = False) -> Offload:
    """Run each call in a worker thread, at most `limiter` at once.

    `abandon_on_cancel`: a cancelled call returns at once (Cancelled) and leaves its thread to
    finish alone, its result dropped (it keeps its `limiter` token until then). Only for work
    whose result no longer matters once its caller is gone (a reload's config read, a user's
    name lookup): a stop must not wait for a hung NFS mount or LDAP server (found by review: it
    waited past systemd's stop timeout). Never for database writes, whose outcome matters.

    What `trio.to_thread.run_sync` does, less a scheduling round: when the limiter has a token
    free, `run_sync` still yields once to the scheduler before the thread starts, and every
    commit paid for it. Here the thread starts at once. As with `run_sync`, a call cancelled
    while its thread runs waits for the thread and returns its result (what was done was done),
    and the cancellation is taken at the caller's next checkpoint. With the limiter taken, the
    call waits for it through `run_sync`.
    """

    async def abandoning(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)

    async def offload(fn: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        borrower = object()
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            return await trio.to_thread.run_sync(fn, limiter=limiter)
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def back(result: Outcome[T]) -> None:  # in the loop's thread
            limiter.release_on_behalf_of(borrower)
            trio.lowlevel.reschedule(task, result)

        def deliver(result: Outcome[T]) -> None:  # in the worker thread
            # The run is still going: this call waits for its thread whatever happens.
            token.run_sync_soon(back, result)

        try:
            trio.lowlevel.start_thread_soon(fn, deliver)
        except BaseException:
            limiter.release_on_behalf_of(borrower)
            raise
        # A thread cannot be stopped: a cancellation waits for it (see above).
        result: T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result

    return abandoning if abandon_on_cancel else offload


async def inline(fn: Callable[[], T]) -> T:
    """Run the call on the loop itself: for tests under `MockClock`, where no time may pass
    while a thread works (the autojump would otherwise fire timers during a commit)."""
    await trio.lowlevel.checkpoint()
    return fn()
