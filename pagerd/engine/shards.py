"""What moves with a shard of services between nodes, on the engine's side: the services'
committed states (loaded for the shard from the shared store) with their deadlines, and the
silence ids every node numbers from one sequence. See `pagerd.engine.ownership`."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection
from typing import Final

import trio

from pagerd.engine.actors import Services
from pagerd.storage.cluster import Cluster
from pagerd.storage.offload import Offload
from pagerd.storage.port import Storage, StoreError
from pagerd.timing.timers import Backoff

log = logging.getLogger("pagerd.ownership")

SILENCE_BLOCK: Final = 16
"""Silence ids taken from the shared sequence at a time: a handful of round trips a day."""


class ServiceShards:
    """The `Adopter` of the services' states: loads a shard's states and hands them to
    `Services`, which arms their deadlines; forgets them when the shard is dropped."""

    def __init__(self, services: Services, store: Storage, offload: Offload) -> None:
        self._services = services
        self._store = store
        self._offload = offload

    async def adopt(self, shards: frozenset[int]) -> None:
        only: dict[str, Collection[int]] = {"shards": shards}  # the shared store's reads take it
        states = await self._offload(lambda: self._store.load_states(**only))
        self._services.adopt(states)

    def adopted(self, shards: frozenset[int]) -> None:
        """Nothing to start: the deadlines armed by `adopt` are offered again until held."""

    def drop(self, shards: frozenset[int]) -> None:
        self._services.drop(shards)


class SharedSilenceIds:
    """Silence ids from `cluster.next_ids("silence")`, a block kept ahead: a silence is
    numbered on the loop, without a round trip, and no two nodes ever give one id twice."""

    def __init__(self, cluster: Cluster, offload: Offload, block: int = SILENCE_BLOCK) -> None:
        self._cluster = cluster
        self._offload = offload
        self._block = block
        self._ids: deque[int] = deque()
        self._wanted = trio.Event()
        self._wanted.set()

    def take(self) -> int | None:
        if len(self._ids) <= self._block // 2:
            self._wanted.set()
        return self._ids.popleft() if self._ids else None

    async def run(self) -> None:
        """Keep the block filled until cancelled; a database that does not answer is tried
        again (meanwhile a silence is refused as unavailable, never numbered twice)."""
        backoff = Backoff(0.5, 30.0)
        while True:
            await self._wanted.wait()
            try:
                ids = await self._offload(lambda: self._cluster.next_ids("silence", self._block))
            except StoreError as exc:
                log.error("cannot take silence ids, retrying: %s", exc)
                await backoff.wait()
                continue
            backoff.reset()
            self._ids.extend(ids)
            if len(self._ids) > self._block // 2:
                self._wanted = trio.Event()
