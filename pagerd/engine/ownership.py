"""This node's share of the services when several nodes share one store: the leases it keeps on
shards of services (`pager.shards`), and what it does when it gains or loses one.

Every `lease_ttl / 4` (sooner when a lease it could take is about to expire) a round says this
node is alive (`join`), works out the shards it should own among the nodes alive (`share`), and
claims them with those it holds, in one `claim`. A shard newly held is *adopted*: its services'
states are loaded, their deadlines armed, their undelivered notifications taken by the outbox
(`Adopter.adopt`), and only then does `holds` say yes for it. A shard no longer returned by the
claim, or preferred by a node that joined (a handover), is *dropped*: its actors stop, its
timers and sends are forgotten (`Adopter.drop`), then, for a handover, the lease is released
so the preferred node takes it at once.

Safety does not wait for a round. Each shard is held until `t + lease_ttl - margin` on this
process's monotonic clock, `t` being the time just before the claim that renewed it was sent:
the database's lease cannot end before that (its clock starts when the claim arrives, after
`t`). `holds` and `fence` read that clock themselves, so past the deadline nothing is decided,
committed or sent for the shard, whichever task runs first after a stall or a SIGSTOP; the
`_expire` task then drops the shard properly. The store's fencing (`Fence`, checked in the same
transaction as each write) is the second guard: a write after the lease was taken fails.
Before it, the committer refuses a write decided under a term (`terms`: the epoch and the
adoption) that is over: the shard was dropped, and maybe taken again, while the write waited.

A round that fails (the database cannot be reached) is logged, counted and tried again; it
never takes paging down. A clean stop drops everything and `leave`s, releasing every lease.

The owner of a lease is this *run* (`run`, the store's per-run origin), not the name: a second
process given the same `node_name` is another owner. While another run's row of this name is
alive in the database (a restart after a `kill -9` looks the same until the old row expires,
within `lease_ttl`), a round claims nothing and the node does not start; if that run goes on
renewing its row past `DUPLICATE_AFTER` lease_ttls, it is another live process of the same
name, and this one stops (`DuplicateNode`): two processes of one name would both be taken for
the owner of the same shards.

Each join publishes the hash of this node's config (`Config.cluster_sha256`) and reads the
others': `agreed` says whether every live node runs the config this one runs now. Where they
differ, it is said loudly (a warning naming the nodes and their hashes, at most every
`MISMATCH_LOG_EVERY` seconds unless the set changes; `pagerd_cluster_config_mismatch`; `pager
status`), and the engine suspends the rule that closes the open incident of a service removed
from the config (`Services.agreement`): a node whose config lacks a service another node pages
must not end that service's escalation for the whole cluster.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, Literal, Protocol, get_args

import attrs
import trio

from pager.protocol import error_reply
from pager.shards import SHARDS, preferred, shard_of, share
from pagerd.operations.metrics import Counter, Metrics
from pagerd.storage.cluster import Cluster, Lease, Node
from pagerd.storage.commits import Term
from pagerd.storage.offload import Offload
from pagerd.storage.port import Fence

log = logging.getLogger("pagerd.ownership")

MOVED: Final = "moved"
"""The result (and error code) of an event whose service this node no longer owns: its shard
was dropped while the event waited. Nothing of it was written; the front hands it to the owner
(through the inbox) instead."""

MIN_MARGIN: Final = 1.0
"""Seconds a shard is given up before its lease could end, at least: a thread's wake-up, a
scheduling delay and the clocks' drift over one lease all fit in it."""
MARGIN_SHARE: Final = 0.2
"""...or this share of the lease, if more (2 s of the default 10 s): a long lease loses more to
drift and to a slow answer, and the margin is what keeps two owners apart."""
RETRY_AFTER_FAILURE: Final = 0.5
"""Seconds before a failed round is tried again (then at each tick): a database that is back
must be used again well within the margin."""
WAKE_SLACK: Final = 0.05
"""Seconds past a lease's expiry (by `remaining`) that a round wakes to take it: the database's
clock and ours do not tick together to the millisecond."""

MIN_WAKE: Final = 0.1
"""Seconds between two rounds at least."""
DUPLICATE_AFTER: Final = 2.0
"""Lease_ttls another run of this node's name may go on renewing its row, once seen, before this
run gives up and stops (`DuplicateNode`): a run that died (killed, its host lost) stops renewing,
and its row expires within one."""
MISMATCH_LOG_EVERY: Final = 60.0
"""Seconds between two warnings that the nodes' configs differ, unless what differs changes."""

DropReason = Literal["expired", "fenced", "handover", "stop", "reload"]
ROUTINE: Final[frozenset[DropReason]] = frozenset({"handover", "stop"})
"""Drops that are the routine of nodes joining and stopping cleanly: logged at INFO. The others
(a lease lost, not given away) at WARNING."""
RELEASED_BELOW: Final = -1e8
"""A lease's `remaining` below this was released (the store reads a released lease's end as
-1e9 s): given away by its owner (a handover, a stop), not run out."""


class DuplicateNode(Exception):
    """Another run of pagerd, alive, holds this node's name in the database: `node_name` must
    differ on every node. This run stops (at start: it does not start)."""


class Moved(Exception):
    """An event for `service` came to a node that does not own it (any more): nothing of it
    was written here. Answered with the result `MOVED` (`moved_reply`)."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"service {service!r} is owned by another node now")


def moved_reply(service: str) -> bytes:
    """The reply line of an event answered `MOVED`."""
    return error_reply(MOVED, str(Moved(service)))


def margin_of(ttl: float) -> float:
    """How long before its lease could end a shard is given up (see `MIN_MARGIN`)."""
    return max(MIN_MARGIN, MARGIN_SHARE * ttl)


class Adopter(Protocol):
    """Something that keeps per-shard work: the services' states and timers, the outbox, the
    inbox."""

    async def adopt(self, shards: frozenset[int]) -> None:
        """Take up `shards` (their leases are this node's now): load what they need. Raises
        (`StoreError`) if it cannot; adopted again at the next round. They do not count as
        held yet: whatever checks `holds` (a send, a take of the inbox) waits for `adopted`."""
        ...

    def adopted(self, shards: frozenset[int]) -> None:
        """`shards` count as held now (every adopter loaded them): start what `adopt` loaded
        (the outbox's sends, the inbox's takes). Never blocks, never raises."""
        ...

    def drop(self, shards: frozenset[int]) -> None:
        """Stop every piece of work of `shards` at once: no decision, commit or send for them
        from now on. Never blocks, never raises."""
        ...


@attrs.frozen
class OwnershipStatistics:
    """What `pager status` and the metrics show of this node's part of the cluster."""

    node: str
    shards: dict[int, int]
    """Each shard held now, with its epoch."""
    renewed_age: float | None
    """Seconds since the claim that renewed the oldest held lease was sent; None if none."""
    rounds: int
    failures: int
    adopted_undelivered: int
    configs: dict[str, str] = attrs.Factory(dict)
    """Each live node's config hash as it said at its last join (this node's: the one it runs
    now); empty until this node joined."""
    config_agreed: bool = False
    """Whether every live node runs this node's config (`Ownership.agreed`)."""


class Ownership:
    def __init__(
        self,
        node: str,
        cluster: Cluster,
        offload: Offload,
        lease_ttl: float,
        metrics: Metrics | None = None,
        *,
        run: str,
        config: Callable[[], str] = lambda: "",
        shards: int = SHARDS,
    ) -> None:
        self.node = node
        self.run_id = run
        """This run's identity (the store's `origin`): the owner of the leases it takes."""
        self._config = config
        self.on_agreement: Callable[[], None] | None = None
        """Called when the nodes come to agree on their config (`agreed` turns true)."""
        self.on_waiting: Callable[[float, str], None] | None = None
        """Told, at start, each time this run waits for another run of its name to end: how
        many seconds more it may wait before it knows, and why (systemd's start timeout is
        extended by as much: a wait of 2 lease_ttl must not be taken for a hung start)."""
        self._configs: dict[str, str] = {}  # each live node's config hash, at the last join
        self._agreed = False
        self._mismatch_logged: tuple[float, frozenset[tuple[str, str]]] | None = None
        self._blocked_since: float | None = None  # another run of this name seen alive since
        self._give_up_at = math.inf
        self.ttl = lease_ttl
        self.margin = margin_of(lease_ttl)
        self._cluster = cluster
        self._offload = offload
        self._shards = shards
        self._adopters: list[Adopter] = []
        self._epochs: dict[int, int] = {}  # adopted and leased: this node decides for them
        self._until: dict[int, float] = {}  # trio time each held shard is given up at
        self._sent_at: dict[int, float] = {}  # trio time its last renewal was sent
        self._leased: dict[int, int] = {}  # leased but not adopted yet (adoption failed)
        self._adoption: dict[int, int] = {}  # each adopted shard's adoption number (`Term`)
        # Epochs of a shard this run's own reloads raised, the lease held all along (`carried`).
        self._superseded: dict[int, set[int]] = {}
        self._adoptions = 0  # adoptions made, numbered
        self._reload_after: dict[int, int] = {}  # adopted again after a claim numbered past this
        self._claims = 0  # claims sent, numbered
        self._free_since: dict[int, float] = {}  # shards seen free (no live lease), since when
        self._changed = trio.Event()
        self._woken = trio.Event()
        self._stopped = False
        self.alive: tuple[str, ...] = ()
        """The other nodes alive at the last round that reached the database (`pager status`)."""
        self.rounds = 0
        self.failures = 0
        self.round_error: str | None = None
        """Why the last round failed (None: it succeeded, or none ran yet): `/-/ready` says it."""
        self.adopted_undelivered = 0
        metrics = metrics or Metrics()
        self._dropped: Counter = metrics.counter(
            "pagerd_cluster_shards_dropped_total",
            "Shards this node stopped owning, by reason: expired (its lease ran out by its own"
            " clock, or another node took it), fenced (a write found it taken), handover (a node"
            " that joined prefers it), stop (a clean stop), reload (a write whose outcome is"
            " unknown: dropped and adopted again from the store).",
            ("reason",),
        )
        # Every reason from the start, at 0: `increase()` misses a series' first increment.
        self._dropped.zero(*((reason,) for reason in get_args(DropReason)))
        self._failed_rounds: Counter = metrics.counter(
            "pagerd_cluster_round_failures_total",
            "Lease rounds that failed (the database could not be reached), tried again.",
        )
        self._adopted: Counter = metrics.counter(
            "pagerd_cluster_adopted_undelivered_total",
            "Undelivered notifications taken over with a shard from its previous owner: those"
            " it was sending when it stopped may be sent twice (each with its idempotency key).",
        )
        metrics.gauges(
            "pagerd_cluster_node_info",
            "This node's name in the cluster ([cluster] node_name), always 1.",
            ("node",),
            lambda: {(self.node,): 1.0},
        )
        metrics.gauge(
            "pagerd_cluster_shards_owned", "Shards this node owns now.", lambda: len(self.held())
        )
        metrics.gauge(
            "pagerd_cluster_lease_renewal_age_seconds",
            "Seconds since this node's oldest lease was last renewed (0 if it holds none).",
            lambda: self.statistics().renewed_age or 0.0,
        )
        metrics.gauge(
            "pagerd_cluster_epoch_max",
            "The highest fencing epoch of the shards this node owns (0 if none).",
            lambda: max(self.held().values(), default=0),
        )
        metrics.gauge(
            "pagerd_cluster_config_mismatch",
            "1 while the live nodes do not all run the same config (as each said at its last"
            " join): a service removed from one node's config keeps its open incident.",
            lambda: 0 if self.agreed() or not self._configs else 1,
        )

    def add(self, adopter: Adopter) -> None:
        """Adopt and drop `adopter`'s work with the shards, after those added before it."""
        self._adopters.append(adopter)

    # What the engine asks, on the loop, as often as it likes. ------------------------------

    def holds_shard(self, shard: int) -> bool:
        """Whether this node decides and sends for `shard` now: adopted, and its deadline by
        this process's own clock not passed (whether or not `_expire` has run yet)."""
        return shard in self._epochs and trio.current_time() < self._until[shard]

    def holds(self, service: str) -> bool:
        return self.holds_shard(shard_of(service, self._shards))

    def deadline(self, service: str) -> float:
        """The trio time this node stops sending for `service` at (-inf if not held)."""
        shard = shard_of(service, self._shards)
        return self._until.get(shard, -math.inf) if shard in self._epochs else -math.inf

    def held(self) -> dict[int, int]:
        """Each shard held now, with its epoch."""
        now = trio.current_time()
        return {s: e for s, e in self._epochs.items() if now < self._until[s]}

    def fence(self) -> Fence:
        """The token every write carries: this node and the epochs of the shards whose lease
        it holds now (adopted, or leased and being adopted or reloaded). Taken at write time:
        a shard past its deadline is left out, so the store refuses a write for it. Which
        writes may go out under it is the committer's check of their `terms`: one decided from
        the states in memory needs the shard adopted still, by the same adoption."""
        return Fence(
            self.node, {s: t.epoch for s, t in self.terms(self._until).items()}, self.run_id
        )

    def terms(self, shards: Collection[int]) -> dict[int, Term]:
        """The current term of each of `shards` whose lease this node holds now, by its own
        clock: its epoch, and its adoption if adopted (None while it is being adopted or
        reloaded). Captured when a decision is made, compared when it is written."""
        now = trio.current_time()
        found: dict[int, Term] = {}
        for shard in shards:
            if self._until.get(shard, -math.inf) <= now:
                continue
            if shard in self._epochs:
                found[shard] = Term(self._epochs[shard], self._adoption[shard])
            elif shard in self._leased:
                found[shard] = Term(self._leased[shard])
        return found

    def raised(self, shards: Collection[int], fence: Fence) -> frozenset[int]:
        """Those of `shards` held now whose epoch in `fence` this run's own reload raised
        (`carried`), or is raising: a reload pending, its claim (with `anew`) maybe committed
        already. While this node holds a lease by its own clock, the database's has not ended
        (the margin), so no other node can have changed its epoch: only this run's claim."""
        now = trio.current_time()
        found = set()
        for shard in shards:
            epoch = fence.epochs.get(shard)
            if epoch is None or self._until.get(shard, -math.inf) <= now:
                continue
            if shard in self._reload_after or epoch in self._superseded.get(shard, ()):
                found.add(shard)
        return frozenset(found)

    def carried(self, shard: int, term: Term) -> Term:
        """`term`, a send's (taken as it started, `Term(epoch)`), as it stands now: where this
        run's own reload raised `shard`'s epoch since (the lease held all along: a lapse or a
        change of owner drops the shard, and its sends with it), the lease's term now, under
        which the send's record is written (found in review: a page delivered through a reload
        was refused its record as stale, left pending, and paged again by the next owner)."""
        if term.epoch in self._superseded.get(shard, ()):
            now = self.terms((shard,)).get(shard)
            if now is not None:
                return Term(now.epoch)
        return term

    def reloading(self, shard: int) -> bool:
        """Whether `shard` is dropped only to be loaded again from the store, its lease kept
        (`reload`): no other node can send for it, so the sends in progress go on."""
        return shard in self._reload_after

    def statistics(self) -> OwnershipStatistics:
        held = self.held()
        now = trio.current_time()
        oldest = min((self._sent_at[s] for s in held), default=None)
        return OwnershipStatistics(
            self.node,
            held,
            None if oldest is None else now - oldest,
            self.rounds,
            self.failures,
            self.adopted_undelivered,
            self.configs(),
            self.agreed(),
        )

    def configs(self) -> dict[str, str]:
        """Each live node's config hash, as it said at its last join; this node's own is the
        one it runs now (a reload counts at once). Empty until this node has joined."""
        if not self._configs:
            return {}
        return {**self._configs, self.node: self._config()}

    def agreed(self) -> bool:
        """Whether every live node runs the config this node runs now: the cluster agrees on
        which services exist, and a service missing from it was removed by all. False until
        this node has joined (nothing is known of the others) and while another run holds its
        name."""
        configs = self.configs()
        return bool(configs) and len(set(configs.values())) == 1

    def count_adopted(self, count: int) -> None:
        """`count` undelivered notifications were taken over with a shard (the outbox's)."""
        self.adopted_undelivered += count
        self._adopted.inc(by=count)

    async def leases(self) -> list[Lease]:
        """Every shard's lease as the database has it (for `pager status`)."""
        return await self._offload(self._cluster.leases)

    # Losing shards. ------------------------------------------------------------------------

    def lose(self, shards: Collection[int], reason: DropReason = "fenced") -> None:
        """Stop owning `shards` now (a write found them taken, or their time is up)."""
        gone = frozenset(s for s in shards if s in self._epochs or s in self._leased)
        if not gone:
            return
        for shard in gone:
            self._epochs.pop(shard, None)
            self._until.pop(shard, None)
            self._sent_at.pop(shard, None)
            self._leased.pop(shard, None)
            self._reload_after.pop(shard, None)
            self._adoption.pop(shard, None)
            self._superseded.pop(shard, None)
        self._dropped.inc(reason, by=len(gone))
        log.log(
            logging.INFO if reason in ROUTINE else logging.WARNING,
            "dropped %d shard(s) reason=%s node=%s: %s",
            len(gone), reason, self.node, _shown(gone),
        )  # fmt: skip
        for adopter in self._adopters:
            try:
                adopter.drop(gone)
            except Exception:  # a bug must not keep the rest of the shard's work going
                log.exception("cannot drop shards %s from %r", _shown(gone), adopter)
        self._changed.set()

    def reload(self, shards: Collection[int]) -> None:
        """A write touching `shards` may or may not have been written (the connection was lost
        during its commit): what this node keeps of them may be stale. Drop them now, keeping
        their leases, and adopt them again, from the store, after a claim sent from now on,
        under a new epoch: a claim waits for every write in flight at the server on its shards
        (the store locks a lease for a write against the claims), so what the adoption reads
        includes that write's outcome, whichever it was; and a write still on its way to the
        server (a connection stuck in the network) arrives fenced by the old epoch, refused.
        Their sends in progress go on (`reloading`); a decision queued from the states dropped
        is refused by its term (`terms`: no adoption now, a new one after)."""
        gone = frozenset(s for s in shards if s in self._epochs)
        if not gone:
            return
        for shard in gone:
            self._leased[shard] = self._epochs.pop(shard)
            self._adoption.pop(shard, None)
            self._reload_after[shard] = self._claims
        self._dropped.inc("reload", by=len(gone))
        log.warning(
            "reloading %d shard(s) node=%s after a write of unknown outcome: %s",
            len(gone), self.node, _shown(gone),
        )  # fmt: skip
        for adopter in self._adopters:
            try:
                adopter.drop(gone)
            except Exception:
                log.exception("cannot drop shards %s from %r", _shown(gone), adopter)
        self._changed.set()
        self._woken.set()

    def _expire_due(self) -> None:
        now = trio.current_time()
        late = [s for s, until in self._until.items() if until <= now]
        if late:
            self.lose(late, "expired")

    async def _expire(self) -> None:
        """Drop each shard at its deadline, whatever the rounds are doing (a claim that hangs
        on an unreachable database must not keep the node deciding past its lease)."""
        while True:
            self._expire_due()
            self._changed = trio.Event()
            earliest = min(self._until.values(), default=math.inf)
            with trio.move_on_at(earliest):
                await self._changed.wait()

    # The rounds. ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep this node's leases until cancelled; on cancellation (a clean stop) drop every
        shard and leave. `task_status.started()` after the first round, tried or not: a node
        that cannot reach the database at start still serves (and owns nothing). Not before
        this run has this node's name, though: `DuplicateNode` if another run keeps it."""
        await self._wait_for_name()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire, name="ownership deadlines")
            try:
                wake = await self._round_contained()
                while self._blocked_since is not None:
                    # Another run of this name is alive: not started until its row ends (a
                    # restart after a kill), or stopped (`DuplicateNode`) if it goes on.
                    await self._wait_until(wake)
                    wake = await self._round_contained()
                task_status.started()
                while True:
                    self._woken = trio.Event()
                    with trio.move_on_at(wake):
                        await self._woken.wait()
                    wake = await self._round_contained()
            finally:
                with trio.CancelScope(shield=True):
                    await self._leave()
                nursery.cancel_scope.cancel()

    async def _wait_for_name(self) -> None:
        """At start: wait while another run's row of this name is alive in the database (a
        restart after a kill: that row ends within `lease_ttl`); `DuplicateNode` if that run
        goes on renewing it (see `_blocked`). A database that does not answer is the rounds'
        to retry: the node starts, owning nothing."""
        run, config = self.run_id, self._config()
        while True:
            try:
                nodes = await self._offload(
                    lambda: self._cluster.join(self.node, self.ttl, run=run, config=config)
                )
            except Exception as exc:
                log.error("cannot join the cluster node=%s, the rounds retry: %s", self.node, exc)
                return
            other = next((n for n in nodes if n.name == self.node and n.run != run), None)
            if other is None:
                return
            await self._wait_until(self._blocked(other))

    async def _wait_until(self, wake: float) -> None:
        """Sleep until `wake`, while another run of this name is alive, saying so first."""
        if self.on_waiting is not None:
            try:
                self.on_waiting(
                    max(wake - trio.current_time(), 0.0) + self.ttl,
                    f"waiting for another run of node {self.node} to end",
                )
            except Exception:
                log.exception("cannot say that node=%s waits", self.node)
        await trio.sleep_until(wake)

    def wake(self) -> None:
        """Run a round now (tests; a node that saw the inbox of a shard nobody holds)."""
        self._woken.set()

    async def _leave(self) -> None:
        self._stopped = True
        self.lose(list(self._epochs) + list(self._leased), "stop")
        with trio.move_on_after(self.margin):
            try:
                await self._offload(lambda: self._cluster.leave(self.node, run=self.run_id))
            except Exception as exc:  # the leases end on their own within lease_ttl
                log.error("cannot leave the cluster (its leases will expire): %s", exc)

    async def _round_contained(self) -> float:
        tick = trio.current_time() + self.ttl / 4
        try:
            wake = min(tick, await self.round())
        except DuplicateNode:
            raise
        except Exception as exc:
            self.round_error = str(exc) or type(exc).__name__
            self.failures += 1
            self._failed_rounds.inc()
            log.error("lease round failed node=%s, retrying: %s", self.node, exc)
            return trio.current_time() + min(RETRY_AFTER_FAILURE, self.ttl / 4)
        self.round_error = None
        return wake

    async def round(self) -> float:
        """One round: say alive, claim, adopt, drop, hand over. The trio time a lease this node
        could take expires at (inf if none), for the next round to wake at."""
        self._expire_due()
        cluster, node, ttl = self._cluster, self.node, self.ttl
        run, config = self.run_id, self._config()
        nodes = await self._offload(lambda: cluster.join(node, ttl, run=run, config=config))
        other = next((n for n in nodes if n.name == node and n.run != run), None)
        if other is not None:
            return self._blocked(other)
        if self._blocked_since is not None:
            log.info(
                "node=%s run=%s: the other run of this name is gone after %.1fs: joining",
                node, run, trio.current_time() - self._blocked_since,
            )  # fmt: skip
            self._blocked_since, self._give_up_at = None, math.inf
        self._compare_configs(nodes)
        alive = {n.name for n in nodes} | {node}
        self.alive = tuple(sorted(alive - {node}))
        leases = {lease.shard: lease for lease in await self._offload(cluster.leases)}
        now = trio.current_time()
        want = share(node, alive, self._shards)
        mine = set(self._epochs) | set(self._leased)
        handover = frozenset(s for s in mine - want if preferred(s, alive) != node)
        orphans = self._orphans(leases, now)
        claimed = (want | orphans | mine) - handover
        if handover:
            # Stop every piece of work of them before the lease goes: after `release`, the
            # preferred node may take them at once.
            self.lose(handover, "handover")
            await self._offload(lambda: cluster.release(node, handover, run=run))
        sent = trio.current_time()  # just before the claim: the lease runs from later than this
        self._claims += 1
        claim = self._claims
        # A reloaded shard is claimed under a new epoch: the write of unknown outcome may
        # still be on its way (a connection stuck in the network, not yet at the server), and
        # must be refused when it arrives, not commit over what the adoption read.
        anew = frozenset(self._reload_after)
        got = await self._offload(lambda: cluster.claim(node, claimed, ttl, run=run, anew=anew))
        self.rounds += 1
        until = sent + ttl - self.margin
        answered = trio.current_time()
        if answered >= until:
            # The answer came too late to be trusted for any time at all.
            log.warning("lease claim answered after %.1fs: too late to use", answered - sent)
            got = {}
        lost = [s for s in mine - handover if s not in got]
        changed = [s for s in got if s in self._epochs and self._epochs[s] != got[s]]
        self.lose(lost, "expired")
        self.lose(changed, "expired")  # lost and taken again meanwhile: adopted afresh
        for shard, epoch in got.items():
            before = self._leased.get(shard)
            if shard in anew and before is not None and before != epoch:
                # Raised by this run's reload, the lease never lapsed: the sends that went on
                # through it are recorded under the new epoch (`carried`).
                self._superseded.setdefault(shard, set()).add(before)
            self._until[shard] = until
            self._sent_at[shard] = sent
            if shard in self._epochs:
                self._epochs[shard] = epoch
            else:
                self._leased[shard] = epoch
        self._changed.set()
        if self._leased and not self._stopped:
            await self._adopt(claim, leases)
        wake = self._next_expiry(leases, got, now)
        if self._reload_after:  # reloaded after this claim was sent: the next claim is due
            wake = min(wake, trio.current_time() + MIN_WAKE)
        return wake

    def _blocked(self, other: Node) -> float:
        """A round that found another run's live row of this name: nothing is claimed (and
        whatever this run still had is dropped: its own row had expired, so its leases have
        too). The trio time to look again: when that row would end unless renewed."""
        now = trio.current_time()
        self._configs, self._agreed = {}, False
        self.lose(list(self._epochs) + list(self._leased), "expired")
        if self._blocked_since is None:
            self._blocked_since = now
            self._give_up_at = now + max(DUPLICATE_AFTER * self.ttl, other.remaining + self.ttl)
            log.warning(
                "node=%s run=%s: another run of this node (run=%s) is alive in the database for"
                " %.1fs more: waiting for it to end before owning anything (a restart after this"
                " node was killed looks the same; if it goes on past %.1fs, it is another pagerd"
                " with the same node_name, and this one stops)",
                self.node, self.run_id, other.run, other.remaining, self._give_up_at - now,
            )  # fmt: skip
        elif now >= self._give_up_at:
            raise DuplicateNode(
                f"another pagerd runs as node {self.node!r} (run {other.run}, still renewing"
                f" after {now - self._blocked_since:.1f}s): node_name must differ on every node"
                " (set [cluster] node_name, or give the hosts different host names)"
            )
        return min(self._give_up_at, now + max(other.remaining, 0.0) + WAKE_SLACK)

    def _compare_configs(self, nodes: Collection[Node]) -> None:
        """Keep the live nodes' config hashes; say loudly when they differ, and tell
        `on_agreement` when they come to agree."""
        self._configs = {n.name: n.config for n in nodes}
        agreed = self.agreed()
        if agreed and not self._agreed:
            self._agreed = True
            if self._mismatch_logged is not None:
                log.info("the nodes run the same config again (%s)", self._config()[:12])
            self._mismatch_logged = None
            if self.on_agreement is not None:
                try:
                    self.on_agreement()
                except Exception:
                    log.exception("cannot act on the nodes' agreement on their config")
            return
        self._agreed = agreed
        if agreed:
            return
        now = trio.current_time()
        seen = frozenset(self.configs().items())
        last = self._mismatch_logged
        if last is not None and last[1] == seen and now - last[0] < MISMATCH_LOG_EVERY:
            return
        self._mismatch_logged = (now, seen)
        shown = " ".join(f"{name}={h[:12] or '?'}" for name, h in sorted(seen))
        log.warning(
            "the nodes run different configs (%s): their paging sections ([services],"
            " [policies], [schedules], [people], [templates]) must be the same on every node;"
            " until they are, a service missing from a node's config keeps its open incident"
            " (not closed as removed), and the node owning it pages nothing for it",
            shown,
        )

    async def _adopt(self, claim: int, leases: Mapping[int, Lease]) -> None:
        """Adopt the shards leased and not adopted yet, but those to reload after a write of
        unknown outcome that came after the claim numbered `claim` was sent (see `reload`).
        `leases`: as the round read them before its claim, to say whom each came from."""
        fresh = frozenset(s for s in self._leased if self._reload_after.get(s, -1) < claim)
        if not fresh:
            return
        try:
            for adopter in self._adopters:
                await adopter.adopt(fresh)
        except BaseException:
            # Half adopted is not adopted: what was taken up is dropped again, and the next
            # round tries the whole again.
            for adopter in self._adopters:
                try:
                    adopter.drop(fresh)
                except Exception:
                    log.exception("cannot drop shards %s from %r", _shown(fresh), adopter)
            raise
        now = trio.current_time()
        for shard in fresh:
            self._reload_after.pop(shard, None)
            epoch = self._leased.pop(shard, None)
            if epoch is not None and self._until.get(shard, -math.inf) > now:
                self._epochs[shard] = epoch
                self._adoptions += 1
                self._adoption[shard] = self._adoptions
        taken = frozenset(s for s in fresh if s in self._epochs)
        if taken:
            log.info(
                "adopted %d shard(s) node=%s: %s",
                len(taken),
                self.node,
                _origins(taken, leases, self.node),
            )
            for adopter in self._adopters:
                try:
                    adopter.adopted(taken)
                except Exception:
                    log.exception("cannot start shards %s in %r", _shown(taken), adopter)
        late = fresh - taken
        if late:  # expired while being adopted: given up again
            for adopter in self._adopters:
                adopter.drop(late)

    def _orphans(self, leases: dict[int, Lease], now: float) -> frozenset[int]:
        """Shards whose lease has been over for longer than lease_ttl/2, whoever should take
        them: their preferred node has not, so it is dead to us or sees other nodes alive."""
        found = set()
        for shard in range(self._shards):
            lease = leases.get(shard)
            if lease is not None and lease.remaining > 0 and lease.owner is not None:
                self._free_since.pop(shard, None)
                continue
            over = -lease.remaining if lease is not None else math.inf
            seen = now - self._free_since.setdefault(shard, now)
            if min(over, seen) >= self.ttl / 2:
                found.add(shard)
        return frozenset(found)

    def _next_expiry(self, leases: dict[int, Lease], got: dict[int, int], now: float) -> float:
        """When the first lease held by another node expires: a node that died is taken over
        then, not at the next tick. Free shards nobody took are looked at when they become
        orphans."""
        wake = math.inf
        for shard, lease in leases.items():
            if shard in got:
                continue
            if lease.remaining > 0:
                wake = min(wake, now + lease.remaining + WAKE_SLACK)
            elif shard in self._free_since:
                wake = min(wake, self._free_since[shard] + self.ttl / 2 + WAKE_SLACK)
        # Never a round straight after a round: a shard that stays out of reach (another node
        # took it meanwhile) must not spin.
        return max(wake, trio.current_time() + MIN_WAKE)


def _origins(shards: Collection[int], leases: Mapping[int, Lease], node: str) -> str:
    """Whom `shards` were adopted from, grouped: another node's lease that ran out (a takeover:
    that node died, or was cut off or paused), one it released (a rebalance: it stopped, or
    handed them over), this node's own (reloaded, or taken back), or none ever."""
    groups: dict[str, list[int]] = {}
    for shard in shards:
        lease = leases.get(shard)
        if lease is None or lease.owner is None:
            origin = "never owned"
        elif lease.owner == node:
            origin = "from this node's own lease"
        elif lease.remaining < RELEASED_BELOW:
            origin = f"from {lease.owner}, released (rebalance)"
        else:
            origin = f"from {lease.owner}, its lease expired (takeover)"
        groups.setdefault(origin, []).append(shard)
    return "; ".join(f"{origin}: {_shown(found)}" for origin, found in sorted(groups.items()))


def _shown(shards: Collection[int]) -> str:
    listed = sorted(shards)
    text = ",".join(str(s) for s in listed[:16])
    return text + (f",... ({len(listed)})" if len(listed) > 16 else "")


def owner_object(
    service: str, node: str, held: Mapping[int, int], leases: Mapping[int, Lease]
) -> dict[str, Any]:
    """Which node owns `service` and under which epoch, as `pager status` shows it: this
    node's word for a shard it holds (`held`, by its own clock), else the database's `leases`
    (by shard). `node` None: no live lease, no node owns it now (a failover under way)."""
    shard = shard_of(service)
    if shard in held:
        return {"node": node, "shard": shard, "epoch": held[shard]}
    lease = leases.get(shard)
    if lease is None or lease.owner is None or lease.remaining <= 0:
        return {"node": None, "shard": shard, "epoch": None}
    return {"node": lease.owner, "shard": shard, "epoch": lease.epoch}
