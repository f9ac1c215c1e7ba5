"""The socket server: JSON lines in, JSON lines out, replies in request order.

Each connection has a reader, which parses requests and routes events to the actors without
waiting for their outcome, and a writer, which sends each reply as soon as it and every earlier
one are ready. The queue between them is bounded: a client that pipelines faster than pagerd
commits, or that never reads its replies, is simply not read from until it catches up. A read
(`status`, `history`, ...) is served only once the events before it on its connection are decided
and committed, so that what it says agrees with the replies before it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs
import trio

from pager import __version__
from pager.domain import Notify, Rejected, incident_id
from pager.protocol import (
    EVENT_OPS,
    MAX_LINE,
    SCHEDULE_OPS,
    SILENCE_OPS,
    ProtocolError,
    Request,
    encode,
    error_reply,
    event_of,
    ok_reply,
    parse_request,
    unknown_service,
)
from pager.shards import shard_of
from pager.simulate import Timeline
from pager.timefmt import duration, isoformat
from pagerd.access.peers import Access, Peer, peer_credentials, resolve
from pagerd.config import Limits
from pagerd.engine.actors import Envelope, Services
from pagerd.engine.compute import CannotCompute, Compute
from pagerd.engine.inbox import Inbox
from pagerd.engine.oncall import Allowed
from pagerd.engine.ownership import Ownership, owner_object
from pagerd.front import oncall
from pagerd.front.connections import Connection, Connections
from pagerd.front.names import Names
from pagerd.front.replies import Reply, ReplyQueue
from pagerd.operations.accepting import serve_listeners
from pagerd.operations.metrics import Metrics
from pagerd.operations.reloads import SHORT_HASH, ConfigRecord
from pagerd.storage.offload import Offload
from pagerd.storage.port import Delivery, Storage, StoreError

log = logging.getLogger("pagerd.server")

MAX_PENDING: Final = 256
RECEIVE_SIZE: Final = 65536


def _done(op: str, line: bytes, result: str = "ok") -> Reply:
    reply = Reply(op)
    reply.set(line, result)
    return reply


class Server:
    def __init__(
        self,
        services: Services,
        store: Storage,
        store_offload: Offload,
        access: Access,
        resolve_offload: Offload,
        metrics: Metrics,
        limits: Limits,
        compute: Compute,
    ) -> None:
        self._services = services
        self.compute = compute  # simulations, off the loop (the schedule ops use the rota's)
        self._store = store
        self._store_offload = store_offload
        self.access = access
        self._resolve_offload = resolve_offload
        self._names = Names(resolve_offload)
        self._metrics = metrics
        self._render_metrics = metrics.render
        self._limits = limits
        self._connections = Connections(lambda: self._limits)
        self._peers: dict[Connection, Peer] = {}  # the connections let in, with who they are
        self._revoked: set[Connection] = set()
        self.config_record: ConfigRecord | None = None  # which config runs, for ping and status
        self.reload: Callable[[], Awaitable[tuple[list[str], list[str]]]] | None = None
        # On a node of a cluster: its leases (`status` shows them), and where the status of
        # services held elsewhere is read.
        self.ownership: Ownership | None = None
        self.cluster: Inbox | None = None
        self.unready: Callable[[], Awaitable[str | None]] | None = None
        """Why this node is not ready, from what it knows (`Readiness.ready`): on a node of a
        cluster, `status` answers from memory at once while the database is known not to
        answer, rather than wait for it to fail (the client's own wait may end first)."""
        """The `reload` op: why the file was rejected (nothing: it runs), and what of it takes
        effect only on restart."""
        # At most this many clients, whatever `max_connections` says: what the open-file limit
        # leaves them (the composition root sets it), so that they cannot take the files that
        # deliveries and the database need.
        self.client_room = sys.maxsize
        self._accepting = trio.CancelScope()
        self._draining = False
        self.closed = trio.Event()

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def max_connections(self) -> int:
        return min(self._limits.max_connections, self.client_room)

    @property
    def limits(self) -> Limits:
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        """New limits (a reload): they apply to the connections already open, too."""
        self._limits = limits
        self._connections.wake()

    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until `drain()`, then return once every connection has finished."""
        async with trio.open_nursery() as server:
            server.start_soon(self._connections.run, name="connection timeouts")
            server.start_soon(self._names.run, name="peer names")
            async with trio.open_nursery() as connections:
                with self._accepting:
                    await serve_listeners(
                        self._handle,
                        [listener],
                        what="socket",
                        handler_nursery=connections,
                        task_status=task_status,
                    )
            server.cancel_scope.cancel()
        self.closed.set()

    def drain(self) -> None:
        """Stop accepting and reading; replies to requests already read are still sent."""
        self._draining = True
        self._accepting.cancel()
        for connection in self._connections:
            connection.stop()

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.max_connections and not self._connections.make_room():
            await self._busy(stream)
            return
        connection = self._connections.open()
        if self._draining:
            connection.stop()
        replies = ReplyQueue(MAX_PENDING, self._metrics.events.inc)
        try:
            with connection.scope:
                async with stream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_replies, stream, replies, connection)
                    try:
                        with connection.reading:
                            peer = await self._peer(stream)
                            if peer is None or not self.access.allows(peer):
                                await self._refuse(stream, replies, peer, connection)
                            else:
                                self._peers[connection] = peer
                                await self._read_requests(stream, replies, peer, connection)
                        if connection in self._revoked:
                            message = (
                                "access revoked by a config reload (allow_users, allow_groups)"
                            )
                            reply = _done("refused", error_reply("forbidden", message), "forbidden")
                            await replies.put(reply)
                    finally:
                        replies.close()
        finally:
            self._connections.close(connection)
            self._peers.pop(connection, None)
            self._revoked.discard(connection)

    async def recheck_peers(self) -> int:
        """After a reload: stop serving the connections whose peer the new rules no longer let
        in. What they sent before is still answered; then one `forbidden`, and the connection
        closes. Who they are is looked up again, since group membership may have changed too.
        Gives back how many were closed."""
        access = self.access
        if not access.restricted or not self._peers:
            self._names.forget()  # the next connections are looked up afresh
            return 0
        with_groups = access.groups is not None
        open_now = list(self._peers.items())
        # Each user once, however many connections it has: NSS may be slow (LDAP).
        users = {(peer.uid, peer.gid): peer for _, peer in open_now}
        self._names.forget()
        found = await self._resolve_offload(
            lambda: {key: resolve(peer, with_groups) for key, peer in users.items()}
        )
        self._names.forget({key: (p.user, p.groups) for key, p in found.items()}, with_groups)
        revoked = 0
        for connection, old in open_now:
            names = found[(old.uid, old.gid)]
            peer = attrs.evolve(old, user=names.user, groups=names.groups)  # its own pid
            if connection in self._peers and not access.allows(peer):
                log.warning(
                    "access revoked by reload: closing the connection of %s", peer.describe()
                )
                self._revoked.add(connection)
                connection.stop()
                revoked += 1
        return revoked

    async def _busy(self, stream: trio.SocketStream) -> None:
        """Too many connections: say so at once and close; the ones already open go on."""
        self._metrics.events.inc("refused", "busy")
        message = f"too many connections (limit {self.max_connections}); try again"
        async with stream:
            with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(error_reply("busy", message))

    async def _peer(self, stream: trio.SocketStream) -> Peer | None:
        try:
            peer = peer_credentials(stream.socket)
        except OSError as exc:
            log.warning("cannot read the peer's credentials: %s", exc)
            return None
        access = self.access
        # root and pagerd's own user are let in by uid: their decision waits for no name.
        restricted = access.restricted and peer.uid not in (0, access.own_uid)
        return await self._names.of(peer, access.groups is not None, restricted)

    async def _refuse(
        self,
        stream: trio.SocketStream,
        replies: ReplyQueue,
        peer: Peer | None,
        connection: Connection,
    ) -> None:
        """Answer the first request with `forbidden`, then close: nothing it sends is read."""
        who = peer.describe() if peer is not None else "unknown peer"
        log.warning("refused connection from %s", who)
        while True:
            data = await self._receive(stream, connection)
            if not data:
                return
            if b"\n" in data:
                break
            connection.line(begun=True, ended=False)
        message = f"{who} may not use this pagerd (see allow_users, allow_groups)"
        await replies.put(_done("refused", error_reply("forbidden", message), "forbidden"))

    async def _read_requests(
        self,
        stream: trio.SocketStream,
        replies: ReplyQueue,
        peer: Peer,
        connection: Connection,
    ) -> None:
        buffer = bytearray()
        while True:
            data = await self._receive(stream, connection)
            if not data:
                return  # EOF: a trailing partial line was never a request, so it is not acted on
            buffer += data
            start = 0
            # The events of what was read are routed together, up to MAX_PENDING at a time, and
            # only then are their replies queued: a queued reply always has an owner that will
            # set it, even if this reader is cancelled (a shutdown) while it waits to route. So
            # a connection holds at most twice MAX_PENDING requests: queued, and being routed.
            events: list[tuple[str, Envelope]] = []
            answers: list[Reply] = []
            valid = False  # a request read: only that keeps the slot (see `make_room`)
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start:end])
                start = end + 1
                if len(line) > MAX_LINE:
                    answers.append(_too_large())
                    await self._queue(events, answers, replies, connection)
                    return
                taken = self._take(line.removesuffix(b"\r"), peer, events)
                if isinstance(taken, Request) or taken.op != "invalid":
                    valid = True
                if isinstance(taken, Request):
                    # Its reply comes after those of the events before it, and so must what it
                    # says: it is served once they are decided and committed.
                    await self._queue(events, answers, replies, connection)
                    events, answers = [], []
                    await replies.wait_settled()
                    if taken.op == "silence_end":
                        taken = await self._end_silence_elsewhere(taken, peer, events)
                    else:
                        taken = await self._request(taken, peer)
                answers.append(taken)
                if len(answers) == MAX_PENDING:
                    await self._queue(events, answers, replies, connection)
                    events, answers = [], []
            del buffer[:start]
            if valid:
                connection.requested()
            connection.line(begun=bool(buffer), ended=start > 0)
            await self._queue(events, answers, replies, connection)
            if len(buffer) > MAX_LINE:
                await replies.put(_too_large())
                return

    async def _receive(self, stream: trio.SocketStream, connection: Connection) -> bytes:
        """The client's next bytes; none at EOF or if the connection broke. After nothing (or
        half a line) for too long, or a line that takes too long to arrive whole, it stops being
        read: the replies already due go out, then the connection closes."""
        self._connections.receiving(connection)
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        connection.received()
        return data

    async def _queue(
        self,
        events: list[tuple[str, Envelope]],
        answers: list[Reply],
        replies: ReplyQueue,
        connection: Connection,
    ) -> None:
        """Route `events`, then queue `answers` in order, waiting while the queue is full.

        Not cut in between by a stop or a revocation (`Connection.stop`): an event routed is
        decided, and its reply must be sent (they were lost: 10,756 replies for 10,996 alerts).
        A connection stopped before is not routed at all; one stopped meanwhile, after."""
        if connection.stopped:
            connection.reading.cancel()
            await trio.lowlevel.checkpoint()
        connection.routing = True
        try:
            await self._services.route(events)
            for reply in answers:
                await replies.put(reply)
        finally:
            connection.routing = False
            if connection.stopped:
                connection.reading.cancel()

    async def _write_replies(
        self, stream: trio.SocketStream, replies: ReplyQueue, connection: Connection
    ) -> None:
        # Every reply already decided goes out in the same write: far fewer syscalls for a
        # client that pipelines, and order is kept.
        while taken := await replies.take(MAX_PENDING):
            # A client that does not take its replies for too long is closed (see `Connections`):
            # unsent replies would only pile up.
            self._connections.writing(connection)
            try:
                await stream.send_all(b"".join([reply.line for reply in taken]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                connection.scope.cancel()  # the client is gone: stop reading from it too
                return
            connection.written()

    def _take(self, line: bytes, peer: Peer, events: list[tuple[str, Envelope]]) -> Reply | Request:
        """Answer `line` at once if it is bad, or queue its event on `events` and give back its
        (pending) reply; a request that must be served in turn is given back as it is."""
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            return _done("invalid", error_reply(exc.code, exc.message), exc.code)
        except Exception:  # a bug in the decoder: this line's, not the daemon's
            log.exception("cannot decode a request line")
            return _done("invalid", error_reply("internal", "internal error"), "internal")
        op, service = request.op, request.service
        if op in SILENCE_OPS:
            try:
                service, event = self._services.silence_event(request, _who(peer))
            except Rejected as exc:
                if op == "silence_end" and exc.code == "not_found" and self.cluster is not None:
                    return request  # perhaps of a service held elsewhere: the store says
                return _done(op, error_reply(exc.code, exc.message), exc.code)
            reply = Reply(op)
            events.append((service, Envelope(event, reply, peer)))
            return reply
        if op not in EVENT_OPS:
            return request
        assert service is not None  # parse_request requires it of events
        if service not in self._services.config.services:
            return _done(op, unknown_service(service), "unknown_service")
        reply = Reply(op)
        events.append((service, Envelope(event_of(request), reply, peer)))
        return reply

    async def _end_silence_elsewhere(
        self, request: Request, peer: Peer, events: list[tuple[str, Envelope]]
    ) -> Reply:
        """A `silence_end` of a silence not in this node's memory: looked up in the store (its
        service may be held by another node) and queued on `events` for its owner, or refused
        as a single node refuses it."""
        op = request.op
        try:
            service, event = await self._services.find_silence_event(request, _who(peer))
        except Rejected as exc:
            return _done(op, error_reply(exc.code, exc.message), exc.code)
        except StoreError as exc:
            log.error("%s failed: %s", op, exc)
            message = f"the database could not be read: {exc}"
            return _done(op, error_reply("unavailable", message), "unavailable")
        reply = Reply(op)
        events.append((service, Envelope(event, reply, peer)))
        return reply

    async def read(self, request: Request) -> tuple[bytes, str]:
        """The reply line and result of a read (`status`, `history`, `ping`), served as the
        socket serves it: for the HTTP front, whose requests have no peer (and so may not
        `reload`)."""
        reply = await self._request(request, None)
        return reply.line, reply.result

    async def schedules(
        self, request: Request, who: str, allowed: Allowed | None
    ) -> tuple[bytes, str]:
        """A schedule op (`SCHEDULE_OPS`) served as the socket serves it, for the HTTP front:
        for `who` (`integration NAME`), within `allowed` (see `oncall.reach`)."""
        reply = await self._request(request, None, who, allowed)
        return reply.line, reply.result

    async def _request(
        self,
        request: Request,
        peer: Peer | None,
        who: str | None = None,
        allowed: Allowed | None = None,
    ) -> Reply:
        try:
            if request.op == "reload":
                return _done("reload", *await self._reload(peer))
            if request.op in SCHEDULE_OPS:
                rota = self._services.rota
                if rota is None:
                    message = "no schedules here"
                    return _done(request.op, error_reply("unavailable", message), "unavailable")
                if who is None and peer is not None:
                    who = _who(peer)
                return _done(request.op, *await oncall.serve(request, rota, who, allowed))
            return await self._serve(request)
        except StoreError as exc:
            # A read failed (an I/O error on a failing disk): this request, not the daemon.
            log.error("%s failed: %s", request.op, exc)
            message = f"the database could not be read: {exc}"
            return _done(request.op, error_reply("unavailable", message), "unavailable")
        except Exception:
            log.exception("%s failed", request.op)
            return _done(request.op, error_reply("internal", "internal error"), "internal")

    async def _serve(self, request: Request) -> Reply:
        op = request.op
        if op == "ping":
            node = {} if self.ownership is None else {"node": self.ownership.node}
            return _done(op, ok_reply(pong=True, version=__version__, **node, **self._config()))
        if op == "metrics":
            return _done(op, ok_reply(text=self._render_metrics()))
        if op == "status":
            return _done(op, *await self._status(request.service))
        if op == "silences":
            service = request.service
            if service is not None and service not in self._services.config.services:
                return _done(op, unknown_service(service), "unknown_service")
            return _done(op, ok_reply(silences=await self._services.all_silences(service)))
        if op == "simulate":
            return _done(op, *await self._simulate(request))
        assert op == "history", op
        return _done(op, *await self._history(request))

    def _status_from_memory(self, ownership: Ownership, why: str) -> bytes:
        """`status` of a node cut from the database: what it knows, said to be no more than
        that (its own shards' services, as long as it still holds them)."""
        log.warning("status from memory only: the database cannot be read: %s", why)
        services = self._services
        held = ownership.held()
        statuses = [
            {**services.status(services.state(name)), "owner": _held(ownership, name)}
            for name in services.config.services
            if shard_of(name) in held
        ]
        # The header as of now, as the services listed: a read that failed may have taken
        # long enough for shards to be dropped meanwhile (an operator saw "owns 85 shard(s)"
        # over an empty list).
        return ok_reply(
            services=statuses,
            database_error=why,
            **self._config(),
            cluster=_cluster(ownership),
        )

    async def _status(self, service: str | None) -> tuple[bytes, str]:
        services = self._services
        ownership = self.ownership
        if service is None:
            names = services.config.services
            if self.cluster is not None and ownership is not None:
                # The whole cluster's, from the store: this node has only its shards in memory.
                down = None if self.unready is None else await self.unready()
                if down is None:
                    try:
                        found = await self.cluster.states(list(names))
                    except StoreError as exc:
                        down = str(exc)
                if down is not None:
                    return self._status_from_memory(ownership, down), "ok"
                statuses = [
                    {**services.status(state, failed), "owner": owner}
                    for state, failed, owner in found
                ]
            else:
                statuses = [services.status(services.state(name)) for name in names]
            cluster = {} if ownership is None else {"cluster": _cluster(ownership)}
            return ok_reply(services=statuses, **self._config(), **cluster), "ok"
        if service not in services.config.services:
            return unknown_service(service), "unknown_service"
        failed: int | None = None
        if self.cluster is not None:
            state, failed = await self.cluster.state(service)
        else:
            state = services.state(service)
        status = services.status(state, failed)
        if ownership is not None:
            status["owner"] = await _owner(ownership, service)
        if state.incident is not None:
            number = state.incident.number
            try:
                deliveries = await self._store_offload(
                    lambda: self._store.deliveries(service, number)
                )
            except StoreError as exc:
                if self.cluster is None:
                    raise
                # Its state is this node's own (it holds the service): shown, its
                # notifications said to be unknown rather than the whole answer refused.
                log.warning("status of %s without its notifications: %s", service, exc)
                status["database_error"] = str(exc)
            else:
                offset = services.offset()
                status["incident"]["notifications"] = [_delivery(d, offset) for d in deliveries]
        return ok_reply(**status), "ok"  # one service's status object, as alert's reply has it

    async def _simulate(self, request: Request) -> tuple[bytes, str]:
        service = request.service
        assert service is not None  # the protocol requires it
        if service not in self._services.config.services:
            return unknown_service(service), "unknown_service"
        services = self._services
        run = services.simulation(service, request.at, request.ack_after, request.rounds)
        try:
            # Hundreds of decisions, each asking the windows and the schedules: off the loop.
            timeline = await self.compute(f"simulating {service}", run)
        except CannotCompute as exc:
            return error_reply(exc.code, exc.message), exc.code
        shown = timeline_object(timeline, services.offset(), services.schedule_zones(service))
        return ok_reply(**shown), "ok"

    def _config(self) -> dict[str, Any]:
        record = self.config_record
        return {} if record is None else {"config": record.describe()}

    async def _reload(self, peer: Peer | None) -> tuple[bytes, str]:
        """What SIGHUP does, for whoever may send SIGHUP: root and pagerd's own user (the file
        is theirs to change; a monitoring account that may page has no say in which version of
        it runs)."""
        if peer is None or peer.uid not in (0, self.access.own_uid):
            message = "reload is for root and pagerd's own user, as SIGHUP is"
            return error_reply("forbidden", message), "forbidden"
        if self.reload is None:
            return error_reply("unavailable", "reload is not available"), "unavailable"
        errors, notes = await self.reload()
        if errors:
            path = self._services.config.path
            message = f"{path} was not reloaded ({len(errors)} error(s)); the previous config runs"
            line = encode(
                {
                    "ok": False,
                    "error": {"code": "invalid_config", "message": message, "errors": errors},
                }
            )
            return line, "invalid_config"
        return ok_reply(**self._config(), notes=notes), "ok"

    async def _history(self, request: Request) -> tuple[bytes, str]:
        store = self._store
        if request.incident is not None:
            service, number = request.incident
        else:
            assert request.service is not None
            service = request.service
            found = await self._store_offload(lambda: store.latest_incident(service))
            if found is None:
                return self._not_found(service, f"{service} has had no incident")
            number = found
        history = await self._store_offload(lambda: store.history(service, number))
        if history is None:
            return self._not_found(service, f"no incident {incident_id(service, number)}")
        offset = self._services.offset()  # the frame's times as the wall clock shows them
        reply = ok_reply(
            service=service,
            incident=incident_id(service, number),
            message=history.message,
            opened_at=isoformat(history.opened_at + offset),
            closed_at=None if history.closed_at is None else isoformat(history.closed_at + offset),
            timeline=[_entry(at, entry, offset) for at, entry in history.timeline],
            elided=history.elided,
        )
        return reply, "ok"

    def _not_found(self, service: str, message: str) -> tuple[bytes, str]:
        """`unknown_service` for a name that is not configured (a typo must not read as "all
        quiet"); a removed service's incidents, still stored, are found before this."""
        if service not in self._services.config.services:
            return unknown_service(service), "unknown_service"
        return error_reply("not_found", message), "not_found"


def _entry(at: float, entry: dict[str, object], offset: float) -> dict[str, object]:
    shown: dict[str, object] = {"at": isoformat(at + offset), **entry}
    until = entry.get("until")
    if isinstance(until, float):  # the elided entry's end
        shown["until"] = isoformat(until + offset)
    due = entry.get("due_at")
    if isinstance(due, float):  # a person's delayed step: decided at `at`, due then
        shown["due_at"] = isoformat(due + offset)
        shown["delay"] = duration(max(due - at, 0.0))
    return shown


def _cluster(ownership: Ownership) -> dict[str, Any]:
    """This node's part of the cluster, as `status` shows it."""
    stats = ownership.statistics()
    age = stats.renewed_age
    return {
        "node": stats.node,
        "shards_owned": len(stats.shards),
        "lease_renewal_age": None if age is None else round(age, 3),
        "epoch_max": max(stats.shards.values(), default=0),
        "epochs": {str(shard): epoch for shard, epoch in sorted(stats.shards.items())},
        "lease_ttl": ownership.ttl,
        "adopted_undelivered": stats.adopted_undelivered,
        "nodes": list(ownership.alive),
        "round_error": ownership.round_error,
        "config_agreed": stats.config_agreed,
        "configs": {name: h[:SHORT_HASH] for name, h in sorted(stats.configs.items())},
    }


def _held(ownership: Ownership, service: str) -> dict[str, Any]:
    """The owner object of a service this node holds, from its memory alone."""
    return owner_object(service, ownership.node, ownership.held(), {})


async def _owner(ownership: Ownership, service: str) -> dict[str, Any]:
    """Which node owns `service` and under which epoch: this one's word if it holds it, else
    the database's (its leases)."""
    held = ownership.held()
    leases = {} if shard_of(service) in held else await ownership.leases()
    return owner_object(service, ownership.node, held, {lease.shard: lease for lease in leases})


def _delivery(d: Delivery, offset: float) -> dict[str, Any]:
    return {
        "id": d.id,
        "channel": d.channel,
        "target": d.target,
        "round": d.round,
        "level": d.level,
        "state": d.state,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "provider_id": d.provider_id,
        "sent_at": None if d.sent_at is None else isoformat(d.sent_at + offset),
        # Not sent before this time: a person's delayed step, or a retry (null: due now, or done).
        "due_at": None if d.due_at is None else isoformat(d.due_at + offset),
        "delay": None if not d.delay else duration(d.delay),  # a delayed step's, from its level
    }


def timeline_object(
    timeline: Timeline,
    offset: float,
    zones: Mapping[int, tuple[str, dt.tzinfo]] | None = None,
) -> dict[str, Any]:
    """A simulation as the `simulate` op replies it (see docs/silences.md). `zones`: the
    schedule of each level that pages one, whose clock shows that level's steps too
    (`local_at`, with `schedule` and `timezone`)."""
    steps: list[dict[str, Any]] = []
    for step in timeline.steps:
        after = round(step.at - timeline.opened_at)  # to the second: `+56d5h40m`, not `...654ms`
        shown: dict[str, Any] = {
            "at": isoformat(step.at + offset),
            "after": duration(after) if after > 0 else "0s",
            "event": step.kind,
            "round": step.round,
            "level": step.level,
        }
        zone = (zones or {}).get(step.level) if step.kind in ("notify", "unreached") else None
        if zone is not None:
            name, tz = zone
            shown["schedule"] = name
            shown["timezone"] = str(tz)
            shown["local_at"] = oncall.local_iso(step.at + offset, tz)
        if step.kind == "notify":
            shown["notify"] = [_planned(n, step.at, offset) for n in step.notifications]
            if step.cancelled:
                shown["cancelled"] = [_planned(n, step.at, offset) for n in step.cancelled]
            if step.silenced:
                shown["silenced"] = [_planned(n, step.at, offset) for n in step.silenced]
        if step.kind == "unreached":
            shown["reasons"] = list(step.reasons)
            shown["partial"] = step.partial
        if step.until is not None:
            shown["until"] = isoformat(step.until + offset)
        if step.held_by is not None:
            shown["held_by"] = step.held_by
        steps.append(shown)
    return {
        "service": timeline.service,
        "opened_at": isoformat(timeline.opened_at + offset),
        "timeline": steps,
        "end": timeline.end,
    }


def _planned(note: Notify, at: float, offset: float) -> dict[str, Any]:
    """One notification of a simulated step: its target, how it was reached (`via`, null for a
    plain address), its delay within the step (a person's rule) and when it goes out."""
    sent = at if note.not_before is None else max(at, note.not_before)
    return {
        "target": str(note.target),
        "channel": note.target.channel,
        "id": note.id,
        "via": note.via or None,
        "delay": duration(sent - at) if sent > at else "0s",
        "at": isoformat(sent + offset),
    }


def _revoked() -> Reply:
    message = "access revoked by a config reload (see allow_users, allow_groups); closing"
    return _done("refused", error_reply("forbidden", message), "forbidden")


def _too_large() -> Reply:
    message = f"request line is over {MAX_LINE} bytes; closing"
    return _done("invalid", error_reply("too_large", message), "too_large")


def _who(peer: Peer) -> str:
    """Who asked, when a silence does not say: the peer's user name, else its uid."""
    return peer.user or f"uid {peer.uid}"
