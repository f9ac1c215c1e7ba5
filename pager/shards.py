"""Which node of a cluster owns which service: services fall into `SHARDS` shards by a hash of
their name, and each shard is owned (leased) by one node at a time.

A shard's preferred owner among the nodes alive is found by rendezvous hashing (highest random
weight): every node computes the same answer from the same list of nodes, and when a node joins
or leaves only the shards it gains or loses move (about 1/n of them), never a reshuffle of the
rest. Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection, Iterable
from typing import Final

SHARDS: Final = 256
"""Shards of every cluster: fixed, so that every node (of any version) agrees on where a service
falls without having to be told. 100,000 services make about 400 a shard; three nodes hold about
85 shards each, renewed in one statement."""


def shard_of(service: str, shards: int = SHARDS) -> int:
    """The shard `service` falls in: CRC-32 of its UTF-8 name, modulo `shards`."""
    return zlib.crc32(service.encode("utf-8")) % shards


def _weight(node: str, shard: int) -> int:
    digest = hashlib.blake2b(f"{shard}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred(shard: int, nodes: Collection[str]) -> str | None:
    """The node that should own `shard` among `nodes` (None if there are none): the one of
    highest weight, ties (never in practice) to the smaller name."""
    if not nodes:
        return None
    return max(sorted(nodes), key=lambda node: _weight(node, shard))


def share(node: str, nodes: Iterable[str], shards: int = SHARDS) -> frozenset[int]:
    """The shards `node` should own when `nodes` are alive (`node` counted among them)."""
    alive = {*nodes, node}
    return frozenset(s for s in range(shards) if preferred(s, alive) == node)
