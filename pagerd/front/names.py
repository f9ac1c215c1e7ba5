"""The user and group names of the peers, looked up (NSS: `/etc/passwd`, or LDAP or sssd, which
may be slow) on their own threads, once per user at a time, and kept a while.

A slow directory must not delay paging (found by review: with a 0.5 s lookup on one thread
shared with the log transport, eight alerts at once took 4 s). So: with no access list, nothing
waits for a name longer than `NAME_WAIT` (the history then records the uid and pid without it;
the lookup goes on and serves the next connection); with one, the decision needs the names, but
one lookup serves every connection of that user meanwhile and for `NAME_TTL` after.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Final

import attrs
import trio

from pagerd.access.peers import Peer, resolve
from pagerd.storage.offload import Offload

log = logging.getLogger("pagerd.server")

NAME_TTL: Final = 60.0
NAME_WAIT: Final = 0.25
MAX_CACHED: Final = 4096  # users: past that the cache starts again (memory stays bounded)
FAILED_TTL: Final = 5.0  # a failed lookup is not tried again for each connection meanwhile

_Key = tuple[int, int, bool]  # uid, gid, with groups


@attrs.frozen
class _Found:
    until: float  # Trio time
    user: str | None
    groups: frozenset[str]


class Names:
    def __init__(self, offload: Offload) -> None:
        self._offload = offload
        self._found: dict[_Key, _Found] = {}
        self._looking: dict[_Key, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._generation = 0  # a lookup started before `forget` does not fill the cache after

    def forget(
        self,
        found: Mapping[tuple[int, int], tuple[str | None, frozenset[str]]] | None = None,
        with_groups: bool = False,
    ) -> None:
        """A reload looked the users up again: keep only that (`found`, by uid and gid, with
        groups), so the next connection is judged on the new answer, not a cached one (found
        by review: a user revoked at reload was let straight back in for `NAME_TTL`)."""
        self._generation += 1
        self._found.clear()
        self._looking.clear()  # lookups under way finish, but the next connections look again
        until = trio.current_time() + NAME_TTL
        for (uid, gid), (user, groups) in (found or {}).items():
            self._found[(uid, gid, with_groups)] = _Found(until, user, groups)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the lookups started for connections that did not wait for them."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def of(self, peer: Peer, with_groups: bool, restricted: bool) -> Peer:
        """`peer` with its names, as far as known within the wait (see the module)."""
        key = (peer.uid, peer.gid, with_groups)
        while True:
            generation = self._generation
            found = self._fresh(key)
            if found is not None:
                break
            if key not in self._looking:
                self._looking[key] = trio.Event()
                if self._nursery is not None:
                    self._nursery.start_soon(self._look_up, key, peer)
                else:
                    await self._look_up(key, peer)
            done = self._looking.get(key)
            if done is not None:
                with trio.move_on_after(math.inf if restricted else NAME_WAIT):
                    await done.wait()
            found = self._fresh(key) or self._found.get(key)
            # A reload meanwhile dropped what this lookup found: a decision looks up again.
            if found is not None or not restricted or generation == self._generation:
                break
        if found is None:
            return peer
        return attrs.evolve(peer, user=found.user, groups=found.groups)

    def _fresh(self, key: _Key) -> _Found | None:
        found = self._found.get(key)
        return found if found is not None and found.until > trio.current_time() else None

    async def _look_up(self, key: _Key, peer: Peer) -> None:
        generation = self._generation
        done = self._looking[key]
        try:
            try:
                resolved = await self._offload(lambda: resolve(peer, key[2]))
                found = _Found(trio.current_time() + NAME_TTL, resolved.user, resolved.groups)
            except Exception as exc:  # NSS failing (LDAP down...) must not end the server
                log.warning("cannot look up the user of %s: %s", peer.describe(), exc)
                # No names: only the uid rules (root, pagerd's own) can let it in meanwhile.
                found = _Found(trio.current_time() + FAILED_TTL, None, frozenset())
            if generation != self._generation:
                return  # looked up before a reload's fresh answers: not kept
            if len(self._found) >= MAX_CACHED:
                self._found.clear()
            self._found[key] = found
        finally:
            if self._looking.get(key) is done:  # not one started after a `forget`
                del self._looking[key]
            done.set()
