"""Per-integration rate limits, and per-address limits on wrong keys: token buckets that refuse
(429) rather than wait.

A sender past its rate is told when to come back (`Retry-After`) instead of being queued: a
queue would hold its requests, and their memory, for as long as the storm lasts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

import trio


class Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = trio.current_time()

    def wait(self) -> float:
        """0 if there is a token now, else the seconds until there is (none taken)."""
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> float:
        """Take one token: 0 if there was one, else the seconds until there is (none taken)."""
        wait = self.wait()
        if wait == 0:
            self._tokens -= 1
        return wait


class RateLimits:
    """One bucket per integration, by name; a reload's new rate applies from the next request."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, Bucket] = {}

    def configure(self, rate: float, burst: int) -> None:
        if (rate, burst) != (self._rate, self._burst):
            self._rate, self._burst = rate, burst
            self._buckets.clear()

    def retry_after(self, integration: str) -> int | None:
        """None if `integration` may send now; else whole seconds to wait (at least 1)."""
        bucket = self._buckets.get(integration)
        if bucket is None:
            bucket = self._buckets[integration] = Bucket(self._rate, self._burst)
        wait = bucket.take()
        return None if wait == 0 else max(1, math.ceil(wait))


FAILED_RATE: Final = 1.0
"""Failed keys a client address may present per second, once its burst is spent."""
FAILED_BURST: Final = 10
MAX_ADDRESSES: Final = 4096
"""Client addresses remembered at once; past that the least recently failing is forgotten."""


class FailedKeys:
    """Wrong keys, slowed down per client address: a token bucket each (`FAILED_BURST`, then
    `FAILED_RATE` a second), in a table of at most `MAX_ADDRESSES` (least recently used out), so
    guessing a key takes forever and a flood of addresses cannot grow memory (found by review:
    1000 guesses a second went through on one connection). The same table, with other rates,
    bounds anything else counted per sender (`take`): link requests, SMS texted back."""

    def __init__(
        self, rate: float = FAILED_RATE, burst: int = FAILED_BURST, size: int = MAX_ADDRESSES
    ) -> None:
        self._rate, self._burst, self._size = rate, burst, size
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, address: str) -> int | None:
        """None if `address` may present a key now; else whole seconds to wait (at least 1)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return None
        wait = bucket.wait()
        return None if wait == 0 else max(1, math.ceil(wait))

    def take(self, address: str) -> int | None:
        """Count one of `address`'s allowance if it has one now: None, and counted (as
        `failed`); else whole seconds to wait, and nothing counted. What a table that limits
        every request, not only the failed ones, asks of it (link requests, SMS texted back)."""
        wait = self.retry_after(address)
        if wait is None:
            self.failed(address)
        return wait

    def failed(self, address: str) -> None:
        """`address` presented a wrong key (or none)."""
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = Bucket(self._rate, self._burst)
            while len(self._buckets) >= self._size:
                self._buckets.popitem(last=False)
        self._buckets[address] = bucket  # the most recent, last
        bucket.take()


class WrongKeys(Protocol):
    """Wrong keys, counted per client address (`FailedKeys`): an address past its allowance
    waits, whatever key it presents. In the core's own process, `HereWrongKeys`; with front
    processes, one table for all of them (`pagerd.front.http.shared.SharedWrongKeys`)."""

    def retry_after(self, address: str) -> int | None:
        """None if `address` may present a key now, else whole seconds to wait: a hint, to
        refuse early (before a body is read); `check` decides."""
        ...

    async def check(self, address: str, right: Callable[[], bool]) -> int | None:
        """Compare a key of `address`'s, unless the address must wait: None once `right()` (the
        comparison: True if the key is right) has run, and counted a wrong key if it said so;
        else whole seconds to wait, and `right` has not run. The wait and the comparison are
        one step (nothing else checks a key of any address in between, in any process), so an
        address's keys checked never exceed its allowance, however many it sends at once.
        `pagerd.front.core.Busy` if the table cannot be had in time."""
        ...


class HereWrongKeys:
    """`WrongKeys` in this process: the HTTP front door's own table."""

    def __init__(self) -> None:
        self.table = FailedKeys()

    def retry_after(self, address: str) -> int | None:
        return self.table.retry_after(address)

    async def check(self, address: str, right: Callable[[], bool]) -> int | None:
        wait = self.table.retry_after(address)
        if wait is not None:
            return wait
        if not right():
            self.table.failed(address)
        return None
