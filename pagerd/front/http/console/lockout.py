"""Failed sign-ins, counted per user name and per client address: past the limit, that name or
address waits `lockout` before it may try again, whatever it presents.

Memory is bounded: at most `size` names and `size` addresses are remembered, the least
recently failing forgotten first (a flood of made-up names pushes out only other made-up names'
counts; a name under attack keeps failing, so stays). An address gets four times a name's
allowance: several people behind one NAT mistype too.

A sign-in is counted as failed before its password is checked (`attempt`), and taken back if
it was right (`succeeded`): a check takes a tenth of a second, and counting only once it is
done would let as many guesses through as can be sent meanwhile, however low the limit.
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

    def failed(self, key: str, now: float, allowed: int, lockout: float) -> float | None:
        """Count a failure of `key`; the lock it set (when it was the last one allowed)."""
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
            return count.locked_until
        return None

    def take_back(self, key: str, lock: float | None, allowed: int) -> None:
        """Uncount one failure of `key` (`lock`: the lock that failure set, if it did)."""
        count = self._counts.get(key)
        if count is None:
            return  # forgotten since (the table is bounded): nothing to take back
        if lock is not None and count.locked_until == lock:
            count.locked_until = 0.0
            count.failures = allowed - 1  # as it stood before: one more failure locks
        else:
            count.failures = max(0, count.failures - 1)

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)


@attrs.frozen
class Attempt:
    """A sign-in counted as failed while its password is checked (`SignInGuard.attempt`)."""

    user: str
    address: str
    allowed: int
    address_lock: float | None
    """The lock of the address this attempt set (it was the last allowed), if it did: taken
    back with it. The user's count is forgotten whole on success."""


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

    def attempt(
        self, user: str, address: str, now: float, allowed: int, lockout: float
    ) -> Attempt | int:
        """Whole seconds to wait if `user` or `address` is locked out; else the attempt, counted
        as failed already (check and count in one step: however many come at once, no more
        than the allowance are let through), until `succeeded` takes it back."""
        wait = self.retry_after(user, address, now)
        if wait is not None:
            return wait
        self._users.failed(user, now, allowed, lockout)
        address_lock = self._addresses.failed(address, now, allowed * ADDRESS_FACTOR, lockout)
        return Attempt(user, address, allowed, address_lock)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt's password was right: it was no failure, and its user's own count
        starts again (its address's does not)."""
        self._addresses.take_back(
            attempt.address, attempt.address_lock, attempt.allowed * ADDRESS_FACTOR
        )
        self._users.forget(attempt.user)
