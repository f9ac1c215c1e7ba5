"""What the front processes share, so that a limit is the whole daemon's and not each front's.

One small file of shared memory (a memfd the core made and handed to every front), in two parts,
each with its own lock (`lockf` on one byte of it, which the kernel lets go of if its holder
dies):

`SharedSeats`: the open HTTP connections `http.max_connections` caps, one slot a front. A front
takes a seat under the lock only while the sum of every slot is under the cap, so the cap holds
across fronts exactly; a front that dies (or hangs, and is killed) has its slot zeroed by the
core before its replacement starts, so its connections, gone with it, are not counted for ever.

`SharedWrongKeys`: the wrong keys of each client address (`FailedKeys`' token buckets, for every
front and the core at once). An address's wait is read, its key compared and a wrong one counted
in one step under the lock, so however many connections an address spreads over the fronts, the
keys it has checked never exceed its allowance (found by review: 500 guessers at once got 13 a
second through two fronts, each front learning of a block only a round trip to the core later).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import Final

import trio

from pagerd.front.core import Busy
from pagerd.front.http.limits import FAILED_BURST, FAILED_RATE, MAX_ADDRESSES

__all__ = ["SharedSeats", "SharedWrongKeys"]

SLOT: Final = struct.Struct("=q")
_ALIGN: Final = 64
_SEATS_LOCK: Final = 0
_KEYS_LOCK: Final = 1
"""The byte each part locks (the file's; its data need not be there)."""

LOCK_PATIENCE: Final = 0.5
"""Seconds a process tries for the wrong keys' lock before it answers 503 busy: a holder keeps
it for microseconds, unless it is stopped (a hung front, which the core replaces)."""
LOCK_PAUSE: Final = 0.001

_COUNT: Final = struct.Struct("=q")
_HEADER: Final = 16
_DIGEST: Final = 16


def _keys_at(slots: int) -> int:
    """Where the wrong keys' part starts, after `slots` seats."""
    return -(-SLOT.size * slots // _ALIGN) * _ALIGN


def _size(slots: int, addresses: int) -> int:
    return _keys_at(slots) + _HEADER + addresses * (_DIGEST + 8 + 8)


class SharedSeats:
    """The seats of every front, as slot `slot` of `slots` sees them (-1: the core's view)."""

    def __init__(self, fd: int, slots: int, slot: int = -1) -> None:
        self.fd = fd
        self.slots = slots
        self._slot = slot
        self._all = struct.Struct(f"={slots}q")
        self._map = mmap.mmap(fd, SLOT.size * slots)

    @classmethod
    def create(cls, slots: int, addresses: int = MAX_ADDRESSES) -> SharedSeats:
        """A new file of `slots` zeroed slots and an empty table of wrong keys for `addresses`
        addresses, in a memfd a front inherits (the core's)."""
        fd = os.memfd_create("pagerd-http-shared", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, _size(slots, addresses))
            return cls(fd, slots)
        except BaseException:
            os.close(fd)
            raise

    def take(self, limit: int) -> bool:
        with self._locked():
            if int(sum(self._all.unpack_from(self._map))) >= limit:
                return False
            self._add(1)
            return True

    def give_back(self) -> None:
        with self._locked():
            self._add(-1)

    def __len__(self) -> int:
        return max(0, int(sum(self._all.unpack_from(self._map))))

    def held(self, slot: int) -> int:
        """The connections slot `slot`'s front holds now."""
        return int(SLOT.unpack_from(self._map, slot * SLOT.size)[0])

    def reset(self, slot: int) -> None:
        """Slot `slot`'s front has gone, and its connections with it (the core)."""
        with self._locked():
            SLOT.pack_into(self._map, slot * SLOT.size, 0)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)

    def _add(self, n: int) -> None:
        at = self._slot * SLOT.size
        (now,) = SLOT.unpack_from(self._map, at)
        SLOT.pack_into(self._map, at, now + n)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Held for a few reads and a write, never across a checkpoint.
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, _SEATS_LOCK)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, _SEATS_LOCK)


class SharedWrongKeys:
    """`WrongKeys` (`pagerd.front.http.limits`) for every process that serves HTTP: `FailedKeys`
    in the shared file, after `slots` seats. An address's bucket is its digest (BLAKE2b, 16
    bytes), its tokens and the time of its last wrong key, on `clock` (`time.monotonic`, the one
    clock every process reads alike); at most `addresses` addresses, the least recently failing
    forgotten first."""

    def __init__(
        self,
        fd: int,
        slots: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate: float = FAILED_RATE,
        burst: int = FAILED_BURST,
        addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._fd = fd
        self._clock = clock
        self._rate, self._burst, self._size = rate, burst, addresses
        self._map = mmap.mmap(fd, _size(slots, addresses))
        self._count_at = _keys_at(slots)
        self._digests = self._count_at + _HEADER
        end = self._digests + addresses * _DIGEST
        view = memoryview(self._map)
        self._tokens = view[end : end + addresses * 8].cast("d")
        self._last = view[end + addresses * 8 : end + addresses * 16].cast("d")
        view.release()

    def __len__(self) -> int:
        return self._count()

    def close(self) -> None:
        self._tokens.release()
        self._last.release()
        self._map.close()

    def retry_after(self, address: str) -> int | None:
        # A hint, read without the lock: `check` decides under it.
        with contextlib.suppress(ValueError, IndexError, OverflowError):  # written meanwhile
            found = self._find(_digest(address))
            if found is not None:
                return self._wait(found, self._clock())
        return None

    async def check(self, address: str, right: Callable[[], bool]) -> int | None:
        digest = _digest(address)
        await self._lock()
        try:
            now = self._clock()
            found = self._find(digest)
            if found is not None:
                wait = self._wait(found, now)
                if wait is not None:
                    return wait
            if not right():
                self._failed(found, digest, now)
            return None
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _KEYS_LOCK)

    def _count(self) -> int:
        return int(_COUNT.unpack_from(self._map, self._count_at)[0])

    def _find(self, digest: bytes) -> int | None:
        start = self._digests
        end = start + self._count() * _DIGEST
        at = self._map.find(digest, start, end)
        while at != -1 and (at - start) % _DIGEST:  # a match across two digests
            at = self._map.find(digest, at + 1, end)
        return None if at == -1 else (at - start) // _DIGEST

    def _tokens_at(self, index: int, now: float) -> float:
        elapsed = max(0.0, now - self._last[index])
        return min(float(self._burst), self._tokens[index] + elapsed * self._rate)

    def _wait(self, index: int, now: float) -> int | None:
        tokens = self._tokens_at(index, now)
        return None if tokens >= 1 else max(1, math.ceil((1 - tokens) / self._rate))

    def _failed(self, index: int | None, digest: bytes, now: float) -> None:
        if index is None:
            count = self._count()
            if count < self._size:
                index = count
                _COUNT.pack_into(self._map, self._count_at, count + 1)
            else:  # the least recently failing goes
                last = self._last.tolist()
                index = last.index(min(last))
            at = self._digests + index * _DIGEST
            self._map[at : at + _DIGEST] = digest
            self._tokens[index] = float(self._burst)
            self._last[index] = now
        self._tokens[index] = self._tokens_at(index, now) - 1
        self._last[index] = now

    async def _lock(self) -> None:
        """The wrong keys' lock, tried without blocking the event loop: a front stopped while it
        held it must not stop every other process that serves HTTP, the core too."""
        with trio.move_on_after(LOCK_PATIENCE):
            while True:
                try:
                    fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _KEYS_LOCK)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                await trio.sleep(LOCK_PAUSE)
        raise Busy("pagerd is busy (the table of wrong keys is held); try again")


def _digest(address: str) -> bytes:
    return hashlib.blake2b(address.encode("utf-8", "surrogateescape"), digest_size=16).digest()
