"""`in_thread`: blocking calls in worker threads, with trio's guarantees, less a round."""

from __future__ import annotations

import threading
import time

import pytest
import trio
import trio.testing

from pagerd.storage.offload import in_thread


async def test_the_call_runs_in_another_thread_and_its_result_comes_back() -> None:
    offload = in_thread(trio.CapacityLimiter(1))
    with trio.fail_after(5):  # a token not given back would hang the second call
        assert await offload(threading.get_ident) != threading.get_ident()
        assert await offload(lambda: 6 * 7) == 42


async def test_an_exception_in_the_call_is_raised_in_the_caller() -> None:
    offload = in_thread(trio.CapacityLimiter(1))

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await offload(fail)
    with trio.fail_after(5):
        assert await offload(lambda: "next") == "next"  # the token was given back


async def test_the_limiter_bounds_the_calls_running_at_once() -> None:
    limiter = trio.CapacityLimiter(2)
    offload = in_thread(limiter)
    lock = threading.Lock()
    running = peak = 0
    two_running, release = threading.Event(), threading.Event()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                two_running.set()
        release.wait(10)
        with lock:
            running -= 1

    with trio.fail_after(10):  # a token not given back would hang the test
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(offload, work)
            await trio.to_thread.run_sync(two_running.wait)
            await trio.testing.wait_all_tasks_blocked()  # the others wait for the limiter
            assert limiter.statistics().tasks_waiting == 4
            release.set()
    assert peak == 2
    assert limiter.borrowed_tokens == 0


async def test_a_cancelled_call_waits_for_its_thread_and_returns_what_it_did() -> None:
    limiter = trio.CapacityLimiter(1)
    offload = in_thread(limiter)
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []
    returned: list[str] = []
    scope = trio.CancelScope()

    def work() -> str:
        started.set()
        release.wait(10)
        finished.append(True)
        return "committed"

    async def call() -> None:
        with scope:
            # What the thread did is reported (a commit that happened did happen); the
            # cancellation is taken at the next checkpoint, as with trio.to_thread.run_sync.
            returned.append(await offload(work))
            await trio.lowlevel.checkpoint()
            returned.append("not reached")

    with trio.fail_after(10):  # a token not given back would hang the test
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.to_thread.run_sync(started.wait)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()  # an abandoned call would have ended
            assert not finished and not scope.cancelled_caught  # waiting for the thread
            release.set()
    assert finished == [True] and scope.cancelled_caught and returned == ["committed"]
    assert limiter.borrowed_tokens == 0


async def test_a_call_already_cancelled_does_not_run() -> None:
    ran: list[bool] = []
    offload = in_thread(trio.CapacityLimiter(1))
    with trio.CancelScope() as scope:
        scope.cancel()
        await offload(lambda: ran.append(True))
    assert scope.cancelled_caught and ran == []


async def test_many_callers_at_once_each_get_their_own_result_within_the_limit() -> None:
    # Callers that find a token free start their thread at once, the others wait through
    # trio.to_thread: mixed, they must still respect the limit and not swap results.
    limiter = trio.CapacityLimiter(1)
    offload = in_thread(limiter)
    lock = threading.Lock()
    running = peak = 0
    results: dict[int, int] = {}

    def work(k: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.0005)  # long enough for a second thread to overlap, if one could
        with lock:
            running -= 1
        return k * k

    async def call(k: int) -> None:
        results[k] = await offload(lambda: work(k))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for k in range(300):
                nursery.start_soon(call, k)
                if k % 7 == 0:
                    await trio.lowlevel.checkpoint()  # some find the token free, some do not
    assert results == {k: k * k for k in range(300)}
    assert peak == 1 and limiter.borrowed_tokens == 0
