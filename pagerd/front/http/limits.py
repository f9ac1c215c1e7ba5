"""Per-integration rate limits: a token bucket each, that refuses (429) rather than waits.

A sender past its rate is told when to come back (`Retry-After`) instead of being queued: a
queue would hold its requests, and their memory, for as long as the storm lasts.
"""

from __future__ import annotations

import math

import trio


class Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = trio.current_time()

    def take(self) -> float:
        """Take one token: 0 if there was one, else the seconds until there is (none taken)."""
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


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
