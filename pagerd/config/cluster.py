"""`[cluster]`: this node's name among several pagerd nodes sharing one PostgreSQL database, and
how long its leases on shards of services last (`pagerd.engine.ownership`).

Only meaningful with a shared store (`[storage] backend = "postgresql"`). With SQLite, a
`[cluster]` table is an error, not a warning: it says the operator believes several nodes
share the state, and two pagerds on two SQLite files would each page every alert. Better to
refuse at `pagerd --check` than to find out at 3 a.m.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any, Final

import attrs

from pager.timefmt import duration
from pagerd.config.durations import Duration

DEFAULT_LEASE_TTL: Final = 10.0
MIN_LEASE_TTL: Final = 2.0
"""Below this the margin (at least 1 s, see `ownership.MIN_MARGIN`) would eat half the lease,
and the renewals (every quarter) would load the database for nothing."""
MAX_LEASE_TTL: Final = 300.0
"""Above this a dead node's services wait too long for another to take them over."""
NODE_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A node's name: shown in `pager status` and the metrics, hashed into shard ownership."""
SHARED_BACKENDS: Final = frozenset({"postgresql"})


_LEASE_TTL: Final = Duration(DEFAULT_LEASE_TTL)


@attrs.frozen
class ClusterSection:
    node_name: str | None = None
    lease_ttl: Duration = _LEASE_TTL


@attrs.frozen
class ClusterConfig:
    """What a node of a cluster runs with."""

    node_name: str
    """This node's name (the host name unless set): unique among the nodes."""
    lease_ttl: float = DEFAULT_LEASE_TTL
    """How long a shard's lease lasts unrenewed: a dead node's services are taken over
    within about this."""


def host_name() -> str:
    """The default node name: this host's, cut to what a node name may be."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:64]
    return name or "pagerd"


def build_cluster(
    value: Any,
    backend: str,
    section: Callable[[Any, type, str], tuple[Any, list[str]]],
) -> tuple[ClusterConfig | None, list[str]]:
    """`[cluster]` (None if not given), or every error in it. `backend`: the store's
    (`[storage] backend`), "sqlite" when not set."""
    if value is None:
        if backend in SHARED_BACKENDS:
            return ClusterConfig(host_name()), []
        return None, []
    if backend not in SHARED_BACKENDS:
        return None, [
            "cluster: only meaningful with a store several nodes share ([storage] backend ="
            ' "postgresql"); with SQLite each pagerd is alone: remove [cluster]'
        ]
    raw, errors = section(value, ClusterSection, "cluster")
    if raw is None:
        return None, errors
    name = raw.node_name if raw.node_name is not None else host_name()
    if NODE_NAME.fullmatch(name) is None:
        errors.append(
            f"cluster.node_name: {name!r} is not a node name (1 to 64 letters, digits, _ . : -)"
        )
    ttl = float(raw.lease_ttl)
    if not MIN_LEASE_TTL <= ttl <= MAX_LEASE_TTL:
        errors.append(
            f"cluster.lease_ttl: {duration(ttl)} is out of bounds: from"
            f" {duration(MIN_LEASE_TTL)} to {duration(MAX_LEASE_TTL)}"
        )
    if errors:
        return None, errors
    return ClusterConfig(name, ttl), []


def backend_of(data: dict[str, Any]) -> str:
    """The store's backend as the file names it (`[storage] backend`; "sqlite" if not)."""
    storage = data.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("backend"), str):
        return str(storage["backend"])
    return "sqlite"
