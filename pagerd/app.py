"""The composition root: builds the store, actors, scheduler, outbox and server from the config,
wires them together, runs them until asked to stop, and applies a new config on reload."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import attrs
import trio

from pager.domain import Notify, ServiceState
from pager.ports import Transport
from pagerd.access import peers
from pagerd.access.keys import KeyFileError, SigningKeys
from pagerd.config import Config, ConfigError, load
from pagerd.config.cluster import ClusterConfig
from pagerd.config.http import FrontConfig, tls_context
from pagerd.delivery.lanes import Answering, build_lanes
from pagerd.delivery.outbox import Outbox
from pagerd.delivery.wording import PLAIN, Wording
from pagerd.delivery.workers import WorkerPool, default_workers
from pagerd.engine.actors import REMOVED, Services
from pagerd.engine.compute import Compute, in_threads
from pagerd.engine.inbox import Inbox, Listen
from pagerd.engine.lookahead import Lookahead, gaps, ignored_lines
from pagerd.engine.oncall import Rota
from pagerd.engine.ownership import DuplicateNode, Ownership
from pagerd.engine.readiness import Readiness
from pagerd.engine.restart import restart as clock_restart
from pagerd.engine.scheduler import Scheduler, heartbeat
from pagerd.engine.shards import ServiceShards, SharedSilenceIds
from pagerd.front.http import HttpApp, HttpServer, Route
from pagerd.front.http.answers import Answers
from pagerd.front.http.console import Console
from pagerd.front.http.console.app import HASHES_AT_ONCE
from pagerd.front.http.fronts import FrontFailed, Fronts
from pagerd.front.http.limits import HereWrongKeys
from pagerd.front.http.metrics import serve_metrics
from pagerd.front.http.rest import RestSilences
from pagerd.front.http.schedules import Schedules
from pagerd.front.http.slack import SlackButtons
from pagerd.front.http.table import routes as http_routes_of
from pagerd.front.http.twilio import TwilioReplies
from pagerd.front.listen import SocketInUse, UnixListener, open_unix_listener
from pagerd.front.local import LocalCore, answer
from pagerd.front.server import Server
from pagerd.operations.failures import leaves, reason
from pagerd.operations.metrics import Metrics
from pagerd.operations.open_files import client_room, raise_limit
from pagerd.operations.reloads import ConfigRecord
from pagerd.operations.systemd import Notifier
from pagerd.storage.cluster import Cluster
from pagerd.storage.commits import Committer
from pagerd.storage.offload import Offload, in_thread
from pagerd.storage.port import ClockMark, Storage, StoreError
from pagerd.storage.retention import keep_history
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock, Reading, boot_warning, watch

__all__ = ["Config", "Daemon", "StartupError", "gaps", "ignored_lines", "serve"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE: Final = 5.0
STOP_TIMEOUT: Final = 15.0
"""A clean stop takes at most this long (the unit's TimeoutStopSec is 20 s): requests already
read are answered, then sends in progress finish and are recorded, in what time remains."""
STATUS_INTERVAL: Final = 5.0  # how often systemd's STATUS= line is brought up to date
CLOSE_TIMEOUT: Final = 5.0
OUTBOX_CAPACITY: Final = 10_000
NAME_THREADS: Final = 8  # NSS lookups at once (each user looked up once at a time)
INBOX_THREADS: Final = 2
"""The cluster inbox's calls at once (puts of events for other nodes, takes, answers, reads of
services held elsewhere): each holds one of the pool's connections (`[storage] pool_size`, 4 by
default, beside the commit's and the leases')."""
LOOKAHEAD_SECONDS: Final = 120.0
"""How long the look at a config after a start or reload may take (in the background, in a
thread of its own): the gaps of many heavy schedules over a year."""


class StartupError(Exception):
    """pagerd cannot start; the message says why, for the operator."""


@attrs.frozen
class Shared:
    """A store several nodes share (PostgreSQL), its cluster calls, and this node among them."""

    store: Storage
    cluster: Cluster
    node: ClusterConfig
    listen: Listen | None = None
    """How the inbox waits for notifications: `cluster.wait` in a thread of its own unless
    given (tests under a mock clock, whose fake cluster waits in wall-clock time)."""


OpenShared = Callable[[Config], Shared]
"""Opens the shared store of a config (blocking: run off the loop); `StoreError` if it cannot."""


def open_shared(config: Config) -> Shared | None:
    """The shared store `config` names (`[storage] backend = "postgresql"`), opened and its
    schema checked (`SchemaMismatch` names `pagerd migrate`); None for SQLite (alone)."""
    if config.storage.backend != "postgresql":
        return None
    # Imported here: a node on SQLite never loads the PostgreSQL driver.
    from pagerd.storage.postgresql.store import Store as SharedStore

    # A shared backend always has a [cluster] (its defaults if the file has none).
    assert config.cluster is not None
    store = SharedStore.from_config(config.storage, node=config.cluster.node_name)
    return Shared(store, store, config.cluster)


@attrs.define
class Daemon:
    """A running daemon: its parts, for status, tests and benchmarks to look into, and reload."""

    services: Services
    scheduler: Scheduler
    outbox: Outbox
    committer: Committer
    store: Storage
    server: Server
    notifier: Notifier
    clock: Clock
    file_offload: Offload
    store_offload: Offload
    config_offload: Offload
    """Where a reload reads its file: abandoned by a stop (a hung mount must not hold it)."""
    compute: Compute
    """Where the questions about schedules that may take long are answered (simulations, who
    is on call next, an override's check, a calendar feed): off the loop, bounded."""
    lookahead: Lookahead
    """The look at the config after each start and reload, in the background: its maintenance
    windows' days worked out, its gaps to come logged."""
    core: LocalCore
    """The core as the HTTP front door reaches it (`pagerd/front/core.py`), in this process."""
    keys: SigningKeys
    """pagerd's signing keys, their one holder: links, Slack buttons and console sessions read
    them here at each use, and a reload reads the file again, which is how `pagerd rotate-key`
    reaches a running pagerd."""
    record: ConfigRecord = attrs.field(factory=lambda: ConfigRecord("", 0.0))
    http: HttpServer | Fronts | None = None
    """The HTTP front door, when it listens: its server in this process (`http.workers = 0`),
    or its front processes."""
    http_app: HttpApp | None = None
    """The HTTP application, when it runs in this process."""
    tls: ssl.SSLContext | None = None
    """The HTTP front door's TLS context for new connections (read again on reload)."""
    tls_files: tuple[Path, Path] | None = None
    """The files of that context: the front processes read them (TLS stays on or off until a
    restart, whatever a reload says)."""
    workers: WorkerPool | None = None
    """The delivery worker processes (`[delivery] workers`), unless sends are made here."""
    wording: Wording = PLAIN
    """What each page says (the config's templates, with links): given to every lane."""
    answering: Answering | None = None
    """What makes pages answerable (SMS reply codes, the keys of Slack buttons): kept for
    reloads."""
    ownership: Ownership | None = None
    """This node's leases, when several nodes share the store (even one alone on it)."""
    _reloading: trio.Lock = attrs.field(factory=trio.Lock, init=False)

    @property
    def config(self) -> Config:
        return self.services.config

    async def reload(self) -> bool:
        """Read the config file again and apply it; on any error keep running the old one.

        Open incidents keep their state; a changed policy applies from the next escalation step.
        """
        return not await self.try_reload()

    async def try_reload(self) -> list[str]:
        """`reload`, giving back why it was rejected (nothing: it was applied)."""
        errors, _ = await self.reload_noted()
        return errors

    async def reload_noted(self) -> tuple[list[str], list[str]]:
        """`reload`, giving back why it was rejected (nothing: it was applied), and what of the
        file takes effect only on restart (`RESTART_ONLY`: each a sentence; for `pager
        reload`)."""
        async with self._reloading:  # SIGHUP and `pager reload`, one at a time
            self.notifier.reloading()
            try:
                await self._reload_keys()
                errors, notes = await self._reload()
                if errors:
                    self.record.rejected(self.clock.now())
                else:
                    self.record.loaded(self.config.sha256, self.clock.now())
                return errors, notes
            finally:
                self.notifier.ready(self.status_line())

    async def _reload_keys(self) -> None:
        """Read the signing keys again (`pagerd rotate-key` wrote new ones): whatever the
        config's fate. A file that cannot be read keeps the keys in use."""
        state_dir = self.config.state_dir
        try:
            keys = await self.file_offload(lambda: SigningKeys.load_or_create(state_dir))
        except KeyFileError as exc:
            log.error("reload: still signing with the keys read before: %s", exc)
            self.record.keys_read(str(exc))
            return
        self.record.keys_read(None)
        if keys.keys != self.keys.keys:
            log.info("reload: signing with the new key of %s", state_dir)
        self.keys = keys

    async def _reload(self) -> tuple[list[str], list[str]]:
        path = self.config.path
        try:
            new = await self.config_offload(lambda: load(path))
        except ConfigError as exc:
            log.error("reload rejected, still running the previous config:\n%s", exc.report())
            return exc.errors, []
        except Exception as exc:  # a bug in the check: it must not take paging down either
            log.error(
                "reload failed, still running the previous config: cannot load %s: %s",
                path, reason(exc), exc_info=log.isEnabledFor(logging.DEBUG),
            )  # fmt: skip
            return [f"cannot load {path}: {reason(exc)}"], []
        problem = peers.namespace_problem(new.access, peers.read_uid_map())
        if problem is not None:
            log.error("reload rejected, still running the previous config: %s", problem)
            return [problem], []
        try:
            notes = self.apply(new)
        except Exception as exc:
            # What the check could not foresee must not take paging down: the old config goes
            # on (apply builds everything before it changes anything).
            log.error(
                "reload failed, still running the previous config: %s", reason(exc),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )  # fmt: skip
            return [f"cannot apply {path}: {reason(exc)}"], []
        try:
            await self.server.recheck_peers()
        except Exception as exc:  # the new config runs; only the recheck of old peers failed
            log.error("reload: cannot check the open connections' peers again: %s", reason(exc))
        return [], notes

    def apply(self, new: Config) -> list[str]:
        """Run `new` from now on; what of it takes effect only on restart keeps its running
        value (so a later reload of the same file says so again), and is given back, a
        sentence each, and logged."""
        old = self.config
        new, notes = restart_only(old, new, tls_on=self.tls is not None)
        for note in notes:
            log.warning("reload: %s", note)
        tls = None if new.http.tls is None else tls_context(*new.http.tls)
        lanes = build_lanes(
            new,
            self.clock,
            self.file_offload,
            reuse=self.outbox.lanes(),
            answering=self.answering,
            wording=self.wording,
            pool=self.workers,
        )
        self.outbox.replace_lanes(lanes)
        added = new.services.keys() - old.services.keys()
        removed = old.services.keys() - new.services.keys()
        self.services.reconfigure(new)
        overrides = [] if self.services.rota is None else self.services.rota.all_overrides()
        self.lookahead.look(new, overrides, self.clock.wall_now())
        self.server.access = new.access
        self.server.limits = new.limits
        if (tls is None) == (self.tls is None):  # TLS turned on or off: on restart
            self.tls = tls  # new connections use the certificate as it is now
            self.tls_files = new.http.tls
        self.core.front = self.front_config(new)
        if isinstance(self.http, Fronts):
            self.http.configure(self.core.front)
        elif self.http is not None:
            self.http.limits = new.http.limits
        self.server.client_room = _client_room(new, isinstance(self.http, HttpServer))
        log.info(
            "reloaded config=%s services=%d added=%d removed=%d",
            new.path, len(new.services), len(added), len(removed),
        )  # fmt: skip
        return notes

    def front_config(self, config: Config) -> FrontConfig:
        """What the HTTP front door serves of `config`, with the TLS files in use."""
        front = config.front()
        return attrs.evolve(front, http=attrs.evolve(front.http, tls=self.tls_files))

    def status_line(self) -> str:
        open_incidents = self.services.open_incidents()
        return f"{len(self.config.services)} services, {open_incidents} open incidents"


RESTART_ONLY: Final = (
    "daemon.socket",
    "daemon.state_dir",
    "metrics.listen",
    "http.listen",
    "http.workers",
    "http.tls_cert",
    "http.tls_key",
    "delivery.workers",
    "cluster.node_name",
    "cluster.lease_ttl",
)
"""The keys a reload cannot change: they take effect on the next restart (`http.tls_cert` and
`http.tls_key` only in that TLS cannot be turned on or off: new files are used at once)."""


def restart_only(old: Config, new: Config, *, tls_on: bool) -> tuple[Config, list[str]]:
    """`new` with what takes effect only on restart kept as `old` runs it, and a sentence for
    each of those that `new` changes. `tls_on`: whether the HTTP front door runs TLS now."""
    notes = [
        f"{key} changed; it takes effect on restart"
        for key, before, after in (
            ("daemon.socket", old.socket, new.socket),
            ("daemon.state_dir", old.state_dir, new.state_dir),
            ("metrics.listen", old.metrics_listen, new.metrics_listen),
            ("http.listen", old.http.listen, new.http.listen),
            ("http.workers", old.http.workers, new.http.workers),
            ("delivery.workers", old.delivery_workers, new.delivery_workers),
            ("cluster.node_name", _node(old), _node(new)),
            ("cluster.lease_ttl", _ttl(old), _ttl(new)),
        )
        if before != after
    ]
    if (new.http.tls is not None) != tls_on:
        turned = "on" if new.http.tls is not None else "off"
        notes.append(
            f"TLS turned {turned} (http.tls_cert, http.tls_key); it takes effect on restart"
        )
    http = attrs.evolve(new.http, listen=old.http.listen, workers=old.http.workers)
    kept = attrs.evolve(
        new,
        socket=old.socket,
        state_dir=old.state_dir,
        metrics_listen=old.metrics_listen,
        http=http,
        delivery_workers=old.delivery_workers,
        cluster=old.cluster,
    )
    return kept, notes


def _node(config: Config) -> str | None:
    return None if config.cluster is None else config.cluster.node_name


def _ttl(config: Config) -> float | None:
    return None if config.cluster is None else config.cluster.lease_ttl


def _client_room(config: Config, http_here: bool) -> int:
    """Socket clients the open-file limit leaves room for, beside the deliveries' connections
    and the HTTP front door's cap (when HTTP is served in this process: a front process has
    files of its own); warned of when the configured caps do not all fit."""
    providers = [c for c in config.channels.values() if c.transport not in ("log", "unconfigured")]
    deliveries = sum(c.concurrency for c in providers)  # connections open at once, at most
    http = config.http.limits.max_connections if http_here else 0
    room = client_room(raise_limit(), deliveries, http)
    if config.limits.max_connections > room:
        log.warning(
            "daemon.max_connections is %d, but the open-file limit leaves room for %d clients "
            "(beside %d deliveries and http.max_connections %d): past that they get busy "
            "(raise LimitNOFILE=, or lower the caps)",
            config.limits.max_connections, room, deliveries, http,
        )  # fmt: skip
    return room


@contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock: two daemons on one database would page twice."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "pagerd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except (FileExistsError, NotADirectoryError):
        raise StartupError(
            f"cannot use state folder {state_dir}: it, or a folder on its path, is a file "
            "(daemon.state_dir must name a folder)"
        ) from None
    except OSError as exc:
        raise StartupError(f"cannot use state folder {state_dir}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(f"another pagerd is using {state_dir}") from None
        yield
    finally:
        os.close(fd)


async def serve(
    config: Config,
    stop: trio.Event,
    *,
    clock: Clock | None = None,
    offload: Offload | None = None,
    transports: Mapping[str, Transport] | None = None,
    outbox_capacity: int = OUTBOX_CAPACITY,
    notifier: Notifier | None = None,
    activated: socket.socket | None = None,
    names_offload: Offload | None = None,
    activated_http: socket.socket | None = None,
    http_routes: list[Route] | None = None,
    delivery_workers: int | None = None,
    compute: Compute | None = None,
    shared: OpenShared | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run pagerd until `stop` is set, then shut down in order: stop accepting, let requests
    already read finish (for up to `SHUTDOWN_GRACE` seconds), stop the rest, close the database.

    `task_status.started()` is called, and systemd told READY=1, once the database is recovered
    and the socket listens. `activated` is a listening socket passed by systemd; otherwise the
    configured path is bound; `activated_http` likewise for the HTTP front door's
    `http.listen`. `http_routes` are served in this process besides the table's
    (`pagerd/front/http/table.py`): with front processes, those forward their requests here
    whole (tests; a route that needs what only the core has). `transports`
    replaces some channels' transports (tests, dry runs). `delivery_workers`, if given, is used
    instead of the config's `[delivery] workers` (tests under a mock clock send in-process: 0).
    `compute` answers the questions about schedules that may take long (simulations, who is
    on call next, overrides' checks, calendar feeds, the gaps) instead of threads of their own
    (tests). `shared` opens a store several nodes share instead of the config's (tests: an
    in-memory cluster over SQLite); a shared store makes this pagerd a node of a cluster, even
    alone.
    """
    # Access lists that would turn every client away (all "nobody"): refused, not obeyed.
    problem = peers.namespace_problem(config.access, peers.read_uid_map())
    if problem is not None:
        raise StartupError(problem)
    if clock is None:
        clock = Clock()
        if (warning := boot_warning()) is not None:
            log.warning("%s", warning)
    notifier = notifier or Notifier(None, None)
    store_offload = offload or in_thread(trio.CapacityLimiter(1))
    file_offload = offload or in_thread(trio.CapacityLimiter(1))
    check_offload = offload or in_thread(trio.CapacityLimiter(1))
    config_offload = offload or in_thread(trio.CapacityLimiter(1), abandon_on_cancel=True)
    # Questions that may take long, each in its own threads: a calendar client or a heavy
    # `oncall` holds up neither paging, nor the database, nor a reload; nor the gaps they.
    lookahead_compute = compute or Compute(offload or in_threads(), seconds=LOOKAHEAD_SECONDS)
    compute = compute or Compute(offload or in_threads())
    # A name lookup a stop (or a gone client) no longer needs is left to its thread (hung LDAP).
    names_offload = (
        names_offload
        or offload
        or in_thread(trio.CapacityLimiter(NAME_THREADS), abandon_on_cancel=True)
    )
    with _exclusive(config.state_dir):
        node: Shared | None = None
        store: Storage
        try:
            node = await store_offload(lambda: (shared or open_shared)(config))
            if node is not None:
                store = node.store
            else:
                store = await store_offload(lambda: Store.open_in(config.state_dir, check=False))
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        try:
            await _run(
                config,
                stop,
                _Parts(
                    clock,
                    store,
                    store_offload,
                    file_offload,
                    check_offload,
                    names_offload,
                    notifier,
                    activated,
                    activated_http,
                    http_routes or [],
                    config_offload,
                    offload or in_thread(trio.CapacityLimiter(HASHES_AT_ONCE)),
                    delivery_workers,
                    compute,
                    lookahead_compute,
                    node,
                    None if offload is None else offload,
                ),
                transports or {},
                outbox_capacity,
                task_status,
            )
        finally:
            with trio.CancelScope(shield=True):
                await store_offload(store.close)


@attrs.frozen
class _Parts:
    clock: Clock
    store: Storage
    store_offload: Offload
    file_offload: Offload
    check_offload: Offload  # the start-up check of the whole database, beside the first reads
    names_offload: Offload  # the peers' user and group names (NSS), several at once
    notifier: Notifier
    activated: socket.socket | None
    activated_http: socket.socket | None
    http_routes: list[Route]
    config_offload: Offload  # a reload's read of the config file (abandoned by a stop)
    password_offload: Offload  # the console's password checks (scrypt: 32 MiB each)
    delivery_workers: int | None  # instead of the config's (tests)
    compute: Compute  # the questions that may take long, off the loop
    lookahead_compute: Compute  # the look at a config after a start or reload, in the background
    shared: Shared | None = None  # a store several nodes share: this pagerd is one of them
    lease_offload: Offload | None = None  # the lease rounds' (tests); else a thread of their own


async def _listen(config: Config, activated: socket.socket | None) -> UnixListener | None:
    """The listener: systemd's socket if it passed one (then it is not ours to remove)."""
    if activated is not None:
        log.info("using the socket passed by systemd")
        return None
    try:
        return await open_unix_listener(config.socket)
    except (FileExistsError, NotADirectoryError):
        raise StartupError(
            f"cannot listen on {config.socket}: a folder on its path is a file"
        ) from None
    except (SocketInUse, OSError) as exc:
        raise StartupError(f"cannot listen on {config.socket}: {exc}") from None


async def _load_checked(store: Storage, parts: _Parts) -> dict[str, ServiceState]:
    """The services' state, loaded while another thread checks the whole database.

    The check reads every page without the GIL, the load builds objects with it: start-up waits
    for the longer of the two rather than both (0.8 s saved for a database of 180 MB). Nothing
    loaded is used unless the check passes.
    """
    corrupt: StoreError | None = None

    async def check() -> None:
        nonlocal corrupt
        try:
            await parts.check_offload(store.verify)
        except StoreError as exc:
            corrupt = exc

    unreadable: StoreError | None = None
    states: dict[str, ServiceState] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check)
        try:
            states = await parts.store_offload(store.load_states)
        except StoreError as exc:
            unreadable = exc
    if corrupt is not None:  # the check's word first: it says what is wrong
        raise StartupError(str(corrupt))
    if unreadable is not None:
        raise StartupError(str(unreadable))
    return states


async def _run(
    config: Config,
    stop: trio.Event,
    parts: _Parts,
    transports: Mapping[str, Transport],
    outbox_capacity: int,
    task_status: trio.TaskStatus[Daemon],
) -> None:
    store, clock, shared = parts.store, parts.clock, parts.shared
    if shared is None:
        states = await _load_checked(store, parts)
        try:  # before anything reads a deadline: they move if the wall clock stepped
            states = await clock_restart(clock, store, parts.store_offload, states)
        except StoreError as exc:
            raise StartupError(str(exc)) from None
    else:
        # Each shard's states are loaded when its lease is taken (`ServiceShards`); stored
        # deadlines are on the wall clock every node shares (kept by NTP), so no node moves
        # them at its start, as one alone does after a step of its own clock.
        states = {}
    for name, state in states.items():
        if state.incident is not None and name not in config.services:
            log.warning(
                "service=%s has an open incident but is no longer configured: it is closed (%s)",
                name,
                REMOVED,
            )
    try:
        keys = await parts.file_offload(lambda: SigningKeys.load_or_create(config.state_dir))
    except KeyFileError as exc:
        raise StartupError(str(exc)) from None
    metrics = Metrics()
    committer = Committer(store, parts.store_offload, metrics)
    ownership: Ownership | None = None
    silence_ids: SharedSilenceIds | None = None
    if shared is not None:
        # Its own thread: a lease round must never wait behind a slow commit.
        ownership = Ownership(
            shared.node.node_name,
            shared.cluster,
            parts.lease_offload or in_thread(trio.CapacityLimiter(1)),
            shared.node.lease_ttl,
            metrics,
            run=store.origin,
            config=lambda: services.config.cluster_sha256,
        )
        committer.fencing = ownership
        ownership.on_waiting = parts.notifier.extend
        silence_ids = SharedSilenceIds(shared.cluster, parts.store_offload)
    inbox: Inbox | None = None
    scheduler = Scheduler(clock)
    heartbeats = Scheduler(clock, heartbeat)

    def current_keys() -> SigningKeys:
        # The daemon's, which a reload reads again: it is built before anything sends or serves.
        return daemon.keys

    async def reply_codes(n: Notify) -> int | None:
        # Replies need somewhere to come back to: the front door's public address.
        if services.config.http.public_url is None:
            return None
        address, at = n.target.address, clock.now()
        return await parts.store_offload(
            lambda: store.reply_code(address, n.service, n.incident, at)
        )

    # The running config and keys, read at each send.
    wording = Wording(lambda: services.config, current_keys)
    answering = Answering(reply_codes, current_keys)
    workers = parts.delivery_workers
    if workers is None:
        workers = config.delivery_workers
    if workers is None:
        workers = default_workers()
    pool = WorkerPool(workers, metrics, wording=wording) if workers > 0 else None
    try:
        lanes = build_lanes(
            config,
            clock,
            parts.file_offload,
            overrides=transports,
            answering=answering,
            wording=wording,
            pool=pool,
        )
    except Exception as exc:
        raise StartupError(f"cannot set up the channels: {reason(exc)}") from exc
    outbox = Outbox(
        store, committer, lanes, parts.store_offload, clock, outbox_capacity, metrics=metrics
    )
    rota = Rota(config, store, parts.store_offload, clock, parts.compute, metrics)
    try:
        await rota.load()
        last_silence = 0 if shared else await parts.store_offload(store.last_silence_id)
    except StoreError as exc:
        raise StartupError(str(exc)) from None
    services = Services(
        config, states, committer, scheduler, outbox, clock, heartbeats, metrics, rota,
        last_silence=last_silence, ownership=ownership, silence_ids=silence_ids,
    )  # fmt: skip
    if shared is not None and ownership is not None:
        # Threads of its own: a put or a read of the inbox never waits behind a commit.
        inbox_offload = parts.lease_offload or in_thread(trio.CapacityLimiter(INBOX_THREADS))
        inbox = Inbox(
            services,
            shared.cluster,
            store,
            ownership,
            inbox_offload,
            clock,
            listen=shared.listen,
            metrics=metrics,
        )
        services.cluster = inbox
        # A service missing from this config is removed only if every node's lacks it too.
        services.agreement = ownership.agreed
        ownership.on_agreement = services.recheck_removed
        outbox.own(ownership)
        ownership.add(ServiceShards(services, store, parts.store_offload))
        ownership.add(outbox)
        ownership.add(inbox)  # last: a shard's events are taken once its states are loaded
    lookahead = Lookahead(parts.lookahead_compute, rota)
    lookahead.look(config, rota.all_overrides(), clock.wall_now())  # once running
    # Acknowledged or closed: no more attempts; silenced: no delayed step sent.
    outbox.watch(services.state, services.silenced_until)
    server = Server(
        services,
        store,
        parts.store_offload,
        config.access,
        # Its own threads: a slow NSS (LDAP) must not wait behind files, nor they behind it.
        parts.names_offload,
        metrics,
        config.limits,
        parts.compute,
    )
    http_here = (parts.activated_http is not None or bool(config.http.listen)) and (
        config.http.front_processes == 0
    )
    server.client_room = _client_room(config, http_here)
    server.ownership = ownership
    server.cluster = inbox
    _gauges(metrics, services, scheduler, heartbeats, outbox, store, pool)

    # PostgreSQL's ping in a thread of its own: it measures the database, not the commits
    # queued before it, and a ping a stop no longer needs is left to its thread (a hung link).
    # SQLite's on the store's one thread, the only one its connection is used from.
    ping_offload = parts.store_offload
    if shared is not None:
        ping_offload = parts.lease_offload or in_thread(
            trio.CapacityLimiter(1), abandon_on_cancel=True
        )
    readiness = Readiness(lambda: ping_offload(store.ping), ownership)
    if shared is not None:
        server.unready = readiness.ready

    daemon = Daemon(
        services,
        scheduler,
        outbox,
        committer,
        store,
        server,
        parts.notifier,
        clock,
        parts.file_offload,
        parts.store_offload,
        parts.config_offload,
        parts.compute,
        lookahead,
        LocalCore(services, server.read, readiness.ready, config.front()),
        keys,
        ConfigRecord(config.sha256, clock.now()),
        workers=pool,
        wording=wording,
        answering=answering,
        ownership=ownership,
    )
    daemon.record.export(metrics)
    server.config_record = daemon.record
    server.reload = daemon.reload_noted
    # Listen once everything that may fail to build is built: a failed start leaves no socket.
    bound = await _listen(config, parts.activated)
    if bound is not None:
        listener = bound.listener
    else:
        assert parts.activated is not None
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(parts.activated))
    try:
        http_listeners = await _http(daemon, metrics, parts)
    except BaseException:
        if bound is not None:
            bound.remove()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(listener)
        raise
    try:
        async with trio.open_nursery() as core:
            core.start_soon(committer.run, name="committer")
            core.start_soon(readiness.run, name="readiness")
            core.start_soon(lookahead.run, name="lookahead")
            # Each node's clock is its own: nothing of it is shared to record.
            record = _record_clock(committer) if shared is None else _unrecorded
            core.start_soon(watch, clock, record, name="clock")
            await core.start(services.run)
            core.start_soon(scheduler.run, services.offer, name="scheduler")
            core.start_soon(heartbeats.run, services.offer, name="heartbeats")
            core.start_soon(outbox.run, name="outbox")
            if ownership is not None and silence_ids is not None and inbox is not None:
                # After the actors and the outbox run: what it adopts goes straight to them.
                await core.start(inbox.run)
                try:
                    await core.start(ownership.run)
                except* DuplicateNode as group:
                    raise StartupError(str(group.exceptions[0])) from None
                core.start_soon(silence_ids.run, name="silence ids")
            if pool is not None:
                core.start_soon(pool.run, name="delivery workers")
            core.start_soon(
                keep_history,
                store,
                parts.store_offload,
                clock,
                lambda: services.config.keep_history,
                metrics,
                name="history",
            )
            await core.start(server.serve, listener)
            if isinstance(daemon.http, HttpServer):
                await core.start(daemon.http.serve, http_listeners)
            elif daemon.http is not None:
                fronts = daemon.http
                await _start_fronts(core, fronts)
                metrics.gauge("pagerd_http_fronts", "HTTP front processes running.", (
                    lambda: fronts.running
                ))  # fmt: skip
            if daemon.http is not None:
                addresses = [_address(each) for each in http_listeners]
                log.info("http on %s", " ".join(addresses))
            if config.metrics_listen is not None:
                host, port = config.metrics_listen
                try:
                    await core.start(serve_metrics, host, port, metrics.render)
                except (OSError, ExceptionGroup) as exc:
                    # `start` hands back the task's error inside a group: look inside.
                    found = list(leaves(exc))
                    if not all(isinstance(e, OSError) for e in found):
                        raise
                    raise StartupError(
                        f"cannot serve metrics on {host}:{port}: {found[0]}"
                    ) from None
            if parts.notifier.watchdog_interval is not None:
                core.start_soon(_watchdog, daemon, parts.notifier.watchdog_interval)
            if parts.notifier.enabled:
                core.start_soon(_keep_status, daemon, name="systemd status")
            if ownership is None:
                log.info(
                    "ready socket=%s services=%d open_incidents=%d",
                    config.socket, len(config.services), services.open_incidents(),
                )  # fmt: skip
            else:
                # Its shards come with the lease rounds, from now on: what it holds yet, not
                # the cluster's open incidents (an operator read open_incidents=0 as those).
                log.info(
                    "ready socket=%s services=%d node=%s shards_held=%d (adopted by the lease"
                    " rounds, with their open incidents)",
                    config.socket, len(config.services), ownership.node, len(ownership.held()),
                )  # fmt: skip
            parts.notifier.ready(daemon.status_line())
            task_status.started(daemon)
            await stop.wait()
            log.info("stopping")
            parts.notifier.stopping()
            server.drain()
            if daemon.http is not None:
                daemon.http.drain()
            if bound is not None:
                bound.remove()
            stopping_since = trio.current_time()
            with trio.move_on_after(SHUTDOWN_GRACE):
                await server.closed.wait()
                if daemon.http is not None:
                    await daemon.http.closed.wait()
            # A send cancelled half-way would be sent again after the restart: let those in
            # progress finish and be recorded (the committer still runs), then stop.
            with trio.move_on_at(stopping_since + STOP_TIMEOUT) as waited:
                await outbox.drain()
            if waited.cancelled_caught:
                log.warning(
                    "stopping with deliveries still in progress after %gs: they will be sent "
                    "again after the restart",
                    STOP_TIMEOUT,
                )
            core.cancel_scope.cancel()
    finally:
        if bound is not None:
            bound.remove()
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            await trio.aclose_forcefully(listener)  # if the server never took it
            for each in http_listeners:
                await trio.aclose_forcefully(each)
            for spec in outbox.lanes().values():
                if spec.close is not None:
                    await spec.close()


def _record_clock(committer: Committer) -> Callable[[Reading], Awaitable[None]]:
    async def record(reading: Reading) -> None:
        await committer.commit([ClockMark(reading)])

    return record


async def _unrecorded(reading: Reading) -> None:
    await trio.lowlevel.checkpoint()


async def _http(daemon: Daemon, metrics: Metrics, parts: _Parts) -> list[trio.SocketListener]:
    """The HTTP front door's listeners, and its server (`http.workers = 0`) or front processes
    on `daemon`: none if `http.listen` is not set and systemd passed no `http` socket."""
    config = daemon.config
    if parts.activated_http is not None:
        log.info("using the http socket passed by systemd")
        socks = [trio.socket.from_stdlib_socket(parts.activated_http)]
        listeners = [trio.SocketListener(sock) for sock in socks]
    elif config.http.listen:
        listeners = []
        try:
            for host, port in config.http.listen:
                listeners += await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            for listener in listeners:
                await listener.aclose()
            raise StartupError(f"cannot listen for http on {host}:{port}: {exc}") from None
    else:
        return []
    services, store = daemon.services, daemon.store
    assert daemon.answering is not None

    def keys() -> SigningKeys:
        # The daemon's at each call: a rotation reaches every route.
        return daemon.keys

    def secure() -> bool:
        """Whether the console's cookies are sent over HTTPS only: TLS here, or in front."""
        public_url = services.config.http.public_url or ""
        return daemon.tls is not None or public_url.lower().startswith("https:")

    console = Console(
        lambda: services.config,
        daemon.server.read,
        lambda service, event, via: answer(services, service, event, via),
        keys,
        daemon.clock.now,
        secure,
        parts.password_offload,
    )
    # Served in this process whatever `http.workers` says: they need what only the core has
    # (the silences' numbering, the schedules and their overrides, the signing keys, the reply
    # codes in the database, the console's sessions), and they are few. With front processes, a
    # front checks their key or reads their body, and forwards them whole. REST's silences; the
    # schedules' iCalendar feeds (GET /schedules/NAME.ics, /calendar/{key}/NAME.ics, computed
    # off the event loop), overrides and on-call (/schedules/NAME/overrides, /overrides/{id},
    # /oncall); the acknowledge links (GET
    # /ack/{token}, POST /ack, the same for resolve); the providers' callbacks for answers to
    # pages: SMS replies (POST /v1/twilio/sms) and Slack buttons (POST /v1/slack/interactions);
    # the web console (under /console/, answering 404 while [console] is not configured).
    replies = TwilioReplies(services, store, daemon.store_offload, daemon.clock)
    in_core = [
        *RestSilences(services, daemon.core, daemon.server.read).routes(),
        *Schedules(services, daemon.core, daemon.server.schedules, daemon.compute).routes(),
        *Answers(services, keys).routes(),
        *replies.routes(),
        *SlackButtons(services, keys, daemon.clock).routes(),
        *console.routes(),
        *parts.http_routes,
    ]
    try:
        daemon.tls = None if config.http.tls is None else tls_context(*config.http.tls)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise StartupError(f"cannot use the TLS certificate of http.tls_cert: {exc}") from None
    daemon.tls_files = config.http.tls
    daemon.core.front = daemon.front_config(config)
    workers = config.http.front_processes
    if workers > 0:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        daemon.http = Fronts(
            workers, listeners, daemon.core, metrics, daemon.core.front, level, in_core
        )
        return listeners
    # REST, then the integrations' own: alertmanager (POST /v1/integrations/alertmanager and
    # .../{key}), events-v2 (POST /v2/enqueue), heartbeat (POST /heartbeat/{service}); then
    # those served in the core.
    wrong_keys = HereWrongKeys()
    routes = [*http_routes_of(daemon.core, metrics, wrong_keys), *in_core]
    daemon.http_app = HttpApp(routes, daemon.core, metrics, wrong_keys)
    daemon.http = HttpServer(
        daemon.http_app,
        config.http.limits,
        lambda: daemon.tls,
        lambda: metrics.http_requests.inc("(busy)", "503"),
    )
    return listeners


async def _start_fronts(nursery: trio.Nursery, fronts: Fronts) -> None:
    """The front processes, started and serving; a `StartupError` if they cannot."""
    try:
        await nursery.start(fronts.serve)
    except (FrontFailed, ExceptionGroup) as exc:
        # `start` hands back the task's error inside a group: look inside.
        found = list(leaves(exc))
        if not all(isinstance(e, FrontFailed) for e in found):
            raise
        raise StartupError(str(found[0])) from None


def _address(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _gauges(
    metrics: Metrics,
    services: Services,
    scheduler: Scheduler,
    heartbeats: Scheduler,
    outbox: Outbox,
    store: Storage,
    pool: WorkerPool | None,
) -> None:
    metrics.gauge("pagerd_services", "Configured services.", lambda: len(services.config.services))
    metrics.gauge("pagerd_open_incidents", "Open incidents.", services.open_incidents)
    metrics.gauge(
        "pagerd_unacknowledged_incidents",
        "Open incidents nobody acknowledged yet.",
        services.unacknowledged_incidents,
    )
    metrics.gauge("pagerd_actors", "Service actors running now.", services.live_actors)
    metrics.gauge(
        "pagerd_scheduled_timeouts", "Acknowledgement timeouts waiting.", lambda: len(scheduler)
    )
    metrics.gauge(
        "pagerd_heartbeats_armed",
        "Heartbeat monitors waiting for their next check-in.",
        lambda: len(heartbeats),
    )
    metrics.gauge("pagerd_silences", "Silences in force or to come.", services.live_silences)
    rota = services.rota
    if rota is not None:
        metrics.gauges(
            "pagerd_gaps",
            "Moments with nobody to page in the next daemon.gap_weeks weeks, as the last start or"
            " reload found them, by kind: policy (no level reaches anyone), level (one level"
            ' reaches nobody), schedule (a schedule\'s own), expected (gaps = "expected").',
            ("kind",),
            rota.gap_counts,
        )
        metrics.gauge(
            "pagerd_next_level_gap_seconds",
            "Seconds until a policy's level (or a whole policy) next reaches nobody: 0 while one"
            " does, +Inf if none in the weeks the last start or reload looked at.",
            rota.next_level_gap,
        )
    metrics.gauge(
        "pagerd_silenced_incidents",
        "Open incidents whose next step a silence holds.",
        services.held_incidents,
    )
    if store.statistics().bytes_on_disk is not None:  # a database on another host: no figure
        metrics.gauge(
            "pagerd_database_bytes",
            "The database's size on disk, with its write-ahead log.",
            lambda: store.statistics().bytes_on_disk or 0,
        )
    metrics.gauge(
        "pagerd_outbox_in_hand",
        "Notifications being delivered or waiting to be.",
        lambda: outbox.statistics().in_hand,
    )
    if pool is not None:
        metrics.gauge(
            "pagerd_delivery_workers",
            "Delivery worker processes running and ready to send.",
            lambda: pool.statistics().ready,
        )


async def _keep_status(daemon: Daemon) -> None:
    """Keep systemd's STATUS= line (`systemctl status pagerd`) true: it was set only at start and
    at reloads, so it showed open incidents long closed, or none of those opened since."""
    sent = daemon.status_line()
    while True:
        await trio.sleep(STATUS_INTERVAL)
        line = daemon.status_line()
        if line != sent:
            daemon.notifier.send(f"STATUS={line}")
            sent = line


async def _watchdog(daemon: Daemon, interval: float) -> None:
    """Tell systemd we are alive only when we are: the store answered within the interval.

    A wedged database or a blocked event loop stops the pings, and systemd restarts us.
    """
    store = daemon.store
    while True:
        due = trio.current_time() + interval
        answered = False
        with trio.move_on_at(due):
            try:
                await daemon.store_offload(store.ping)
                answered = True
            except StoreError as exc:
                log.error("watchdog: the database does not answer: %s", exc)
        if answered:
            daemon.notifier.watchdog()
        await trio.sleep_until(due)
