"""Failed sign-ins, counted per user name and per client address: past the limit, that name or
address waits `lockout` before it may try again, whatever it presents.

Memory is bounded: at most `size` names and `size` addresses are remembered, the least
recently failing forgotten first (a flood of made-up names pushes out only other made-up names'
counts; a name under attack keeps failing, so stays). An address gets four times a name's
allowance: several people behind one NAT mistype too.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Final

import attrs

MAX_REMEMBERED: Final = 4096
ADDRESS_FACTOR: Final = 4


@attrs.define
class _Count:
    failures: int
    since: float
    locked_until: float = 0.0


class _Table:
    def __init__(self, size: int) -> None:
        self._size = size
        self._counts: OrderedDict[str, _Count] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def wait(self, key: str, now: float) -> float:
        count = self._counts.get(key)
        return 0.0 if count is None else max(0.0, count.locked_until - now)

    def failed(self, key: str, now: float, allowed: int, lockout: float) -> None:
        count = self._counts.pop(key, None)
        if count is None or now - count.since > lockout:
            count = _Count(0, now)  # failures long ago are forgiven
        while len(self._counts) >= self._size:
            self._counts.popitem(last=False)
        self._counts[key] = count  # the most recent, last
        count.failures += 1
        if count.failures >= allowed:
            count.locked_until = now + lockout
            count.failures, count.since = 0, now

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)


class SignInGuard:
    def __init__(self, size: int = MAX_REMEMBERED) -> None:
        self._users = _Table(size)
        self._addresses = _Table(size)

    def __len__(self) -> int:
        return len(self._users) + len(self._addresses)

    def retry_after(self, user: str, address: str, now: float) -> int | None:
        """None if `user` may try to sign in from `address` now; else whole seconds to wait."""
        wait = max(self._users.wait(user, now), self._addresses.wait(address, now))
        return None if wait <= 0 else max(1, math.ceil(wait))

    def failed(self, user: str, address: str, now: float, allowed: int, lockout: float) -> None:
        self._users.failed(user, now, allowed, lockout)
        self._addresses.failed(address, now, allowed * ADDRESS_FACTOR, lockout)

    def succeeded(self, user: str) -> None:
        """`user` signed in: its own count starts again (its address's does not)."""
        self._users.forget(user)
