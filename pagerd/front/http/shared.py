"""What the front processes share, so that a limit is the whole daemon's and not each front's.

`SharedSeats`: the open HTTP connections `http.max_connections` caps, counted in one small page
of shared memory (a memfd the core made and handed to every front), one slot a front. A front
takes a seat under a lock (`lockf`, which the kernel lets go of if its holder dies) only while
the sum of every slot is under the cap, so the cap holds across fronts exactly; a front that
dies has its slot zeroed by the core before its replacement starts, so its connections, gone
with it, are not counted for ever.

`FrontWrongKeys`: wrong keys are counted by the core for every front (`pagerd/front/http/
fronts.py`), which tells every front of an address past its allowance (`Block`).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from typing import Final

from pagerd.front.core import CoreUnavailable
from pagerd.front.http.remote import RemoteCore

SLOT: Final = struct.Struct("=q")


class SharedSeats:
    """The seats of every front, as slot `slot` of `slots` sees them (-1: the core's view)."""

    def __init__(self, fd: int, slots: int, slot: int = -1) -> None:
        self.fd = fd
        self._slots = slots
        self._slot = slot
        self._all = struct.Struct(f"={slots}q")
        self._map = mmap.mmap(fd, SLOT.size * slots)

    @classmethod
    def create(cls, slots: int) -> SharedSeats:
        """A new table of `slots` zeroed slots, in a memfd a front inherits (the core's)."""
        fd = os.memfd_create("pagerd-http-seats", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, SLOT.size * slots)
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
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)


class FrontWrongKeys:
    """`WrongKeys` in a front process: the core counts them for every front, and says which
    addresses wait (`RemoteCore.blocked`)."""

    def __init__(self, core: RemoteCore) -> None:
        self._core = core

    def retry_after(self, address: str) -> int | None:
        return self._core.blocked.retry_after(address)

    async def failed(self, address: str) -> None:
        with contextlib.suppress(CoreUnavailable):  # the front is stopping: nothing to count
            await self._core.wrong_key(address)
