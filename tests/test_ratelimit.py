"""The token bucket that paces each channel's deliveries."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from pagerd.delivery.ratelimit import TokenBucket


async def test_a_burst_goes_at_once_then_the_rate_paces_the_rest(autojump_clock: object) -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    start = trio.current_time()
    times = []
    for _ in range(7):
        await bucket.acquire()
        times.append(trio.current_time() - start)
    assert times == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5, 2.0])


async def test_a_quiet_spell_refills_up_to_the_burst_only(autojump_clock: object) -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    for _ in range(2):
        await bucket.acquire()
    await trio.sleep(100)
    start = trio.current_time()
    for _ in range(3):
        await bucket.acquire()
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_waiters_are_served_in_order(autojump_clock: object) -> None:
    bucket = TokenBucket(rate=10.0, burst=1)
    served: list[int] = []

    async def take(k: int) -> None:
        await bucket.acquire()
        served.append(k)

    async with trio.open_nursery() as nursery:
        for k in range(5):
            nursery.start_soon(take, k)
            await trio.testing.wait_all_tasks_blocked()
    assert served == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("rate", [math.inf, 5.0])
async def test_acquire_is_a_cancellation_point_even_with_a_token_free(rate: float) -> None:
    bucket = TokenBucket(rate=rate, burst=10)
    with trio.CancelScope() as scope:
        scope.cancel()
        await bucket.acquire()
        pytest.fail("acquire() did not notice the cancellation")
    assert scope.cancelled_caught
