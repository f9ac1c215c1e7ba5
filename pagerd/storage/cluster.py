"""The cluster's part of a store that several pagerd nodes share (PostgreSQL): who is alive,
who owns which shard of services (leases with fencing epochs), and the inbox through which any
node hands an event to the owner of its service.

Time here is the database's own clock (`now()` in PostgreSQL): a lease expires by it, so that
no node's clock decides for another. A node keeps its own, safer bound by its monotonic clock
(see `pagerd.engine.ownership`): it stops deciding and sending for a shard before the database
could give that shard to another node.

A lease is held by a *run* of a node (its name and the store's per-run `origin`), not by the
name alone: two processes given one name (a copied config, hosts cloned from one image) are two
owners, and a claim by a run of a name whose lease another run of that name holds is refused
while that lease lasts, and raises the epoch when it is over, as any change of owner does.

Fencing: a node's writes carry a `Fence` (`port.Fence`): its name, its run and the epoch of each
shard it holds. The store checks, in the same transaction as the write and under a lock that a
`claim` by another node waits for, that every shard the batch touches is still leased to that
run of that node, under that epoch, and not expired; else nothing is written and `Fenced` names
the shards lost. So a node that was paused, partitioned or slow past its lease cannot commit for
a shard after its successor has taken it.

Every call blocks: callers run it through an `Offload`, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final, Protocol

import attrs

from pagerd.storage.port import Handled, StoreError

__all__ = ["Handled"]  # a write of the inbox's, with the port's other writes

INBOX_CHANNEL: Final = "pagerd_inbox"
"""The `LISTEN`/`NOTIFY` channel a `put` notifies, with the shard as its payload."""
ANSWER_CHANNEL: Final = "pagerd_answered"
"""The channel a handled inbox event notifies, with its id as the payload."""


class Fenced(StoreError):
    """A write touched shards this node no longer holds (another owner, a newer epoch, or its
    lease expired): nothing of the batch was written."""

    def __init__(self, shards: Collection[int]) -> None:
        self.shards = frozenset(shards)
        super().__init__(f"no longer the owner of shard(s) {sorted(self.shards)}")


@attrs.frozen
class Lease:
    """A shard's lease as the database has it."""

    shard: int
    owner: str | None
    """The node holding (or last holding) it; None if no node ever did."""
    epoch: int
    """Increased by one at every change of owner (0: never owned)."""
    remaining: float
    """Seconds until it expires by the database's clock (zero or less: expired, or released)."""


@attrs.frozen
class Node:
    """A node that said it is alive (`join`)."""

    name: str
    remaining: float
    """Seconds until its word expires by the database's clock."""
    run: str = ""
    """The run that said it (`Storage.origin`): the name's row is that run's until it expires,
    so a second process of the same name sees a run that is not its own."""
    config: str = ""
    """The hash of the config that run runs (`Config.cluster_sha256`), as it said at its last
    join: the nodes agree on their config when every live node's is the same."""


@attrs.frozen
class Queued:
    """An event put in the inbox by some node, for the owner of `service`'s shard."""

    id: int
    """Increasing in the order the events were put (for one service: the order they are
    handled in)."""
    shard: int
    service: str
    event: bytes
    """The event as the engine encoded it: the store keeps it as it is."""
    at: float
    """When it was put (wall-clock seconds, of the node that put it)."""
    node: str
    """The node that put it (and waits for its answer)."""


class Cluster(Protocol):
    """The cluster's calls on a shared store. Each is one transaction."""

    def join(self, node: str, ttl: float, *, run: str, config: str = "") -> list[Node]:
        """Say `node` (its run `run`, running the config whose hash is `config`) is alive for
        `ttl` seconds from the database's now; every node alive now (`node` among them), by
        name. If another run's row of `node` has not expired, it is left as it is (and given
        back, its run not `run`): this run is not alive as `node` until that one's ends."""
        ...

    def leave(self, node: str, *, run: str) -> None:
        """`node`'s run `run` stops (a clean stop): it is alive no more, and every lease it
        holds is released (another run's of the same name are left alone), so that the others
        take its shards at once instead of after `lease_ttl`."""
        ...

    def claim(
        self,
        node: str,
        shards: Collection[int],
        ttl: float,
        *,
        run: str,
        anew: Collection[int] = (),
    ) -> dict[int, int]:
        """Take or renew each of `shards` for `node`'s run `run` until the database's now +
        `ttl`: each one that is free, expired, released, or this run's already. The epoch goes
        up by one where the owner changes (another node, or another run of `node`; or the shard
        was released, even by this run itself), and on the shards of `anew` (a new term of the
        same owner: every write fenced by the epoch before, still on its way to the database,
        is refused from now on); a renewal keeps it. Shards held by another run's live lease
        (of any name, `node` too) are left alone. What `node` holds of `shards` now, shard ->
        epoch. Waits for any write fenced by a shard it takes."""
        ...

    def release(self, node: str, shards: Collection[int], *, run: str) -> None:
        """Expire at once the leases `node`'s run `run` holds on `shards` (a handover, or a
        stop): from now on a write fenced by them fails, and another node may claim them."""
        ...

    def leases(self) -> list[Lease]:
        """Every shard's lease, by shard (for `pager status` and the metrics)."""
        ...

    def put(self, node: str, service: str, event: bytes, at: float) -> int:
        """Put `event` in the inbox for the owner of `service`'s shard, durably, and notify
        `INBOX_CHANNEL` (at commit) with the shard: its id."""
        ...

    def put_many(self, node: str, items: Sequence[tuple[str, bytes, float]]) -> list[int]:
        """`put` each (service, event, at) of `items`, all in one transaction (durable on
        return, all or none), notifying each shard once: their ids, in the order of `items`
        (increasing within a service, as `put` one after the other). For what is routed
        together (an Alertmanager payload's events, a connection's burst): one commit, not
        one each."""
        ...

    def take(
        self, shards: Collection[int], after: int, limit: int, *, skip: Collection[str] = ()
    ) -> list[Queued]:
        """Up to `limit` events of `shards` not yet handled whose id is greater than `after`,
        by id, but those of the services `skip` (their earlier events are being decided: a
        storm of one must not hide every other service's events behind it). Reads only: an
        event is handled by the `Handled` write of the batch that decided it, never by being
        taken."""
        ...

    def answers(self, ids: Sequence[int]) -> dict[int, str]:
        """The answer of each of `ids` that has been handled (those not yet are left out)."""
        ...

    def next_ids(self, name: str, count: int) -> range:
        """`count` ids never given before, of the sequence `name` (`"silence"`): ids that
        several nodes hand out (silences are numbered where they start, on any node) without
        ever giving one twice. Durable on return."""
        ...

    def wait(self, channels: Collection[str], timeout: float) -> list[tuple[str, str]]:
        """Block until a notification on one of `channels` arrives (or `timeout` seconds pass):
        the (channel, payload) of every one that arrived, none on a timeout. It has a
        connection of its own, listening from the first call on; one caller at a time."""
        ...
