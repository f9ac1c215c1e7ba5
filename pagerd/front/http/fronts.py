"""The front processes, seen from the core: started, served, replaced, stopped.

The core opens the HTTP listeners (or takes the one systemd passed) and starts `http.workers`
front processes (`process.py`), handing each the listeners, one end of a socketpair (its private
channel) and the shared memory (`shared.py`: the seats, the wrong keys). The kernel hands each
new connection to whichever front accepts it first. Each channel is served here: a front's
events go to the actors through `LocalCore.hand_over` (the same path as the socket's, answered
after commit), its reads to the socket server's, its counts to the core's metrics; the core
sends it the config at its start and at each reload, and pings it.

Kept for every front at once: each integration's rate (here, in `LocalCore`), and, in the file
of shared memory every front maps (`shared.py`), the cap on connections and the wrong keys of
each client address (a bad signature of a route served here counts there too). A front that
exits unasked (a crash, `kill -9`) is replaced; so is one that does not answer a `Ping` within
`PING_WITHIN` twice in a row (hung: stopped, or its loop blocked): it is killed, and its seats
given back. What it had in flight failed at its clients, who retry, and what of it was
committed stays committed. A clean stop asks each front to stop accepting and to answer what it
has in flight (`drain`); the composition root bounds that wait, then stops this, which kills any
front still running.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Final

import trio

from pagerd.config.http import FrontConfig
from pagerd.front.core import Busy, OverRate
from pagerd.front.http.asgi import Response, error
from pagerd.front.http.channel import (
    Answered,
    BrokenChannel,
    Counts,
    Drain,
    Failed,
    Forward,
    History,
    Limited,
    Ping,
    Pong,
    Reader,
    Ready,
    ReadyAnswer,
    Serving,
    Status,
    Submit,
    ToCore,
    configure,
    encode,
    from_wire,
    replied,
    to_core,
)
from pagerd.front.http.routes import Call, Route, handle
from pagerd.front.http.shared import SharedSeats, SharedWrongKeys
from pagerd.front.local import LocalCore
from pagerd.operations.metrics import Metrics
from pagerd.timing.timers import Backoff

__all__ = ["FrontFailed", "Fronts"]

log = logging.getLogger("pagerd.http.fronts")

START_TIMEOUT: Final = 60.0
"""Seconds a front may take from its start to serving (imports, on a loaded machine)."""
EXIT_TIMEOUT: Final = 5.0
"""Seconds a front whose channel has closed may take to exit before it is killed."""
RESTART_MIN: Final = 0.5
RESTART_MAX: Final = 30.0
STEADY: Final = 30.0
"""A front that ran this long before it exited is replaced at once; one that exits sooner, after
a back-off (`RESTART_MIN` doubled up to `RESTART_MAX`): a front that cannot run must not spin."""
MAX_IN_FLIGHT: Final = 4096
"""Submissions of one front the core holds at once; past it, that channel is not read."""
MAX_READS: Final = 64
"""Reads (status, history) and forwarded requests of one front served at once; past it,
likewise. A `Ready` takes none: every `Ready` of a front waits for one answer (`LocalCore.ready`,
itself one ping of the database a second)."""
PING_EVERY: Final = 5.0
"""Seconds between two pings of a front."""
PING_WITHIN: Final = 5.0
"""Seconds a front has to answer a ping. One that misses two in a row is hung, killed and
replaced: two, so that the core's own pause (a stop, a slow moment) cannot condemn a front."""


class FrontFailed(Exception):
    """A front process could not start: pagerd cannot serve HTTP."""


class _Channel:
    """The core's end of one front's channel."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        fronts: Fronts,
        serving: Callable[[], None],
        hung: Callable[[], None],
    ) -> None:
        """`hung` is told when the front has missed two pings in a row (it kills it)."""
        self._stream = stream
        self._fronts = fronts
        self._serving = serving
        self._hung = hung
        self._out: list[bytes] = []
        self._wake = trio.lowlevel.ParkingLot()
        self._closed = False
        self._in_flight = 0
        self._room = trio.lowlevel.ParkingLot()
        self._reads = trio.Semaphore(MAX_READS)
        # Submissions, in the order read, to the task that hands them over one by one (in
        # order: a connection's events keep theirs). Bounded by `MAX_IN_FLIGHT`: each is
        # counted in flight before it is queued.
        self._submits, self._to_submit = trio.open_memory_channel[Submit](MAX_IN_FLIGHT)
        self._ready_ids: list[int] = []  # `Ready`s waiting for the answer under way
        self._pings = 0
        self._heard = trio.Event()  # anything from the front since the last ping
        self._receiving = False  # waiting for what the front sends (not held back by the core)
        self.pid: int | None = None

    def send(self, line: bytes) -> None:
        """Queue `line` for the front (dropped once the channel has closed: the front is gone,
        and so is whoever was waiting for it)."""
        if self._closed:
            return
        self._out.append(line)
        if len(self._out) == 1:
            self._wake.unpark()

    async def aclose(self) -> None:
        self._closed = True
        await trio.aclose_forcefully(self._stream)

    async def serve(self) -> None:
        """Until the front closes its end (it stopped, or died)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                nursery.start_soon(self._submitter)
                await self._read(nursery)
                nursery.cancel_scope.cancel()
        finally:
            self._closed = True

    async def _write(self) -> None:
        while True:
            while not self._out:
                await self._wake.park()
            out, self._out = self._out, []
            try:
                await self._stream.send_all(b"".join(out))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _read(self, nursery: trio.Nursery) -> None:
        reader = Reader(self._stream, to_core)
        try:
            while True:
                self._receiving = True
                try:
                    messages = await reader.receive()
                finally:
                    self._receiving = False
                if not messages:
                    return
                self._heard.set()
                for message in messages:
                    await self._take(message, nursery)
        except BrokenChannel as exc:
            log.error("http front pid=%s: its channel broke (closing it): %s", self.pid, exc)

    async def _take(self, message: ToCore, nursery: trio.Nursery) -> None:
        if isinstance(message, Submit):
            # Queued, not handed over here: a hand-over may wait (events for services other
            # nodes own go to the inbox, a commit; a hung database holds it for seconds), and
            # the front's `Ready`, pings and reads must not wait behind it (found by an
            # operator: `/-/ready` took 2 s while an event waited on a cut node).
            while self._in_flight >= MAX_IN_FLIGHT:
                await self._room.park()
            self._in_flight += 1
            self._submits.send_nowait(message)
        elif isinstance(message, (Status, History)):
            await self._reads.acquire()
            nursery.start_soon(self._read_one, message)
        elif isinstance(message, Ready):
            self._ready_ids.append(message.id)
            if len(self._ready_ids) == 1:
                nursery.start_soon(self._ready)
        elif isinstance(message, Forward):
            await self._reads.acquire()
            nursery.start_soon(self._forward, message)
        elif isinstance(message, Counts):
            self._fronts.count(message)
        elif isinstance(message, Pong):
            pass  # heard: that was all it was for
        else:
            assert isinstance(message, Serving)
            self.pid = message.pid
            self._serving()
            if self._fronts.ping_every > 0:
                nursery.start_soon(self._keep_alive)

    async def _keep_alive(self) -> None:
        """Ping the front every `ping_every` seconds; tell `hung` once it has missed two pings
        in a row: sent nothing at all within `ping_within` of each while the core was waiting
        to read it. A front the core does not read meanwhile (it holds back a front whose
        submissions fill `MAX_IN_FLIGHT`, or whose events wait for their actors in a storm)
        cannot answer, and is not blamed."""
        missed = 0
        while True:
            await trio.sleep(self._fronts.ping_every if missed == 0 else 0)
            self._pings += 1
            self._heard = trio.Event()
            self.send(encode(Ping(self._pings)))
            with trio.move_on_after(self._fronts.ping_within):
                await self._heard.wait()
            silent = not self._heard.is_set() and self._receiving
            missed = missed + 1 if silent else 0
            if missed == 2:
                log.error(
                    "http front pid=%s answered no ping within %gs twice: hung; killed, replaced",
                    self.pid, self._fronts.ping_within,
                )  # fmt: skip
                self._hung()
                return

    async def _ready(self) -> None:
        """Answer every `Ready` of the front that came in while the core's answer was asked
        for, with it (one task a front at most)."""
        try:
            why = await self._fronts.core.ready()
        except Exception as exc:
            log.exception("http front pid=%s: cannot tell whether pagerd is ready", self.pid)
            why = f"the core cannot tell: {exc}"
        ids, self._ready_ids = self._ready_ids, []
        for id in ids:
            self.send(encode(ReadyAnswer(id, why)))

    async def _submitter(self) -> None:
        async for message in self._to_submit:
            await self._submit(message)

    async def _submit(self, message: Submit) -> None:
        """Hand `message` over; it was counted in flight when it was queued."""
        id = message.id
        held = True  # this submission's place among those in flight, given back once

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                self._in_flight -= 1
                self._room.unpark()

        def done(outcomes: list[tuple[bytes, str]]) -> None:
            give_back()
            self.send(replied(id, outcomes))

        try:
            events = [from_wire(event) for event in message.events]
            core = self._fronts.core
            await core.hand_over(message.integration, events, done, message.terse)
        except OverRate as over:
            give_back()
            self.send(encode(Limited(id, over.integration, over.retry_after)))
        except Exception:
            give_back()
            log.exception("http front pid=%s: cannot hand over a submission", self.pid)
            self.send(encode(Failed(id)))

    async def _read_one(self, message: Status | History) -> None:
        core = self._fronts.core
        try:
            if isinstance(message, Status):
                outcome = await core.status(message.integration, message.service)
            else:
                outcome = await core.history(message.integration, message.service)
            self.send(replied(message.id, [outcome]))
        except OverRate as over:
            self.send(encode(Limited(message.id, over.integration, over.retry_after)))
        except Exception:
            log.exception("http front pid=%s: cannot serve a read", self.pid)
            self.send(encode(Failed(message.id)))
        finally:
            self._reads.release()

    async def _forward(self, message: Forward) -> None:
        """A request for a route served in the core, answered by its handler here."""
        try:
            self.send(_answered(message.id, await self._fronts.answer(message)))
        except Exception:
            log.exception("http front pid=%s: cannot serve a forwarded request", self.pid)
            self.send(encode(Failed(message.id)))
        finally:
            self._reads.release()


def _answered(id: int, response: Response) -> bytes:
    return encode(
        Answered(id, response.status, response.body, response.content_type, list(response.headers))
    )


class _Start:
    """One front's start: whether it has said it serves, and whom to tell when it does."""

    def __init__(self, tell: Callable[[], None] | None) -> None:
        self.served = False
        self._tell = tell

    def serving(self) -> None:
        if not self.served:
            self.served = True
            if self._tell is not None:
                self._tell()


class Fronts:
    def __init__(
        self,
        count: int,
        listeners: list[trio.SocketListener],
        core: LocalCore,
        metrics: Metrics,
        front: FrontConfig,
        log_level: str = "info",
        in_core: Sequence[Route] = (),
    ) -> None:
        """`count` front processes serving `listeners` (kept open here, for the next front),
        reaching `core`; `front` is the config they serve first. `in_core` are routes served
        here, in the core: a front forwards their requests whole (for a route that needs what
        only the core has; the others are the table's, handled in the fronts)."""
        self.core = core
        self._in_core_routes = list(in_core)
        self.in_core = {(route.method, route.pattern): route for route in in_core}
        self._count = count
        self._listeners = listeners
        self._metrics = metrics
        self._log_level = log_level
        self._seats = SharedSeats.create(count)
        self.wrong_keys = SharedWrongKeys(self._seats.fd, count)
        self.ping_every = PING_EVERY
        self.ping_within = PING_WITHIN
        self._configure = encode(configure(front, self._in_core_routes))
        self._channels: dict[int, _Channel] = {}
        self._draining = False
        self._drained = trio.Event()  # set by `drain`
        self.ports: list[int] = [listener.socket.getsockname()[1] for listener in listeners]
        self.closed = trio.Event()

    @property
    def open_connections(self) -> int:
        """HTTP connections open now, in every front."""
        return 0 if self.closed.is_set() else len(self._seats)

    @property
    def running(self) -> int:
        return len(self._channels)

    def pids(self) -> list[int]:
        """The running fronts' process ids (those that have said they serve)."""
        return [c.pid for c in self._channels.values() if c.pid is not None]

    def configure(self, front: FrontConfig) -> None:
        """Serve `front` from now on (a reload): every front is sent it, and each new one."""
        self._configure = encode(configure(front, self._in_core_routes))
        for channel in self._channels.values():
            channel.send(self._configure)

    def drain(self) -> None:
        """Stop: each front stops accepting, answers what it has in flight, and exits. The
        listeners are closed here too (no front will start again): once every front has closed
        its own, a new connection is refused rather than left in a backlog nobody serves."""
        if self._draining:
            return
        self._draining = True
        self._drained.set()
        for channel in self._channels.values():
            channel.send(encode(Drain()))
        for listener in self._listeners:
            listener.socket.close()

    def held(self, slot: int) -> int:
        """The connections front `slot` holds now."""
        return 0 if self.closed.is_set() else self._seats.held(slot)

    def pid_of(self, slot: int) -> int | None:
        channel = self._channels.get(slot)
        return None if channel is None else channel.pid

    async def answer(self, message: Forward) -> Response:
        """The answer of the route served in the core that `message` is for: its provider's
        signature checked here first, where the secret is (a bad one counted as a wrong key of
        its address, in the table every front shares), then its handler's."""
        route = self.in_core.get((message.method, message.pattern))
        if route is None and message.method == "HEAD":  # a GET route's, as `find` gives it
            route = self.in_core.get(("GET", message.pattern))
        if route is None:
            return error(404, "not_found", "no such endpoint (see /openapi.json)")
        integration = None
        if message.integration is not None:
            integration = self.core.config().integrations.get(message.integration)
            if integration is None:  # a reload removed it since the front checked its key
                return error(401, "unauthorized", "the key is no longer an integration's")
        call = Call(
            message.method, message.path, message.params, message.headers, message.body,
            integration, address=message.address, query=message.query,
        )  # fmt: skip
        if route.signed is not None:
            signed = route.signed
            refused: list[Response] = []

            def right() -> bool:
                found = signed.check(call)
                if found is not None:
                    refused.append(found)
                return found is None or found.status != 403  # a 404: not set up

            try:
                wait = await self.wrong_keys.check(message.address, right)
            except Busy as busy:
                return error(503, "busy", str(busy), ("retry-after", str(busy.retry_after)))
            if wait is not None:
                text = f"too many badly signed requests from this address; retry in {wait}s"
                return error(429, "busy", text, ("retry-after", str(wait)), ("connection", "close"))
            if refused:
                if refused[0].status == 403:
                    self._metrics.http_auth_failures.inc(signed.provider)
                return refused[0]
        return await handle(route, call)

    def count(self, counts: Counts) -> None:
        for route, code, n in counts.requests:
            self._metrics.http_requests.inc(route, code, by=n)
        for kind, n in counts.auth_failures:
            self._metrics.http_auth_failures.inc(kind, by=n)
        for integration, reason, n in counts.refused:
            self._metrics.http_events_refused.inc(integration, reason, by=n)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the fronts until drained (each has exited), replacing any that exits unasked;
        started once every front serves. `FrontFailed` if one cannot start."""
        try:
            async with trio.open_nursery() as nursery:
                serving = 0
                all_serving = trio.Event()

                def one_more() -> None:
                    nonlocal serving
                    serving += 1
                    if serving == self._count:
                        all_serving.set()

                for slot in range(self._count):
                    nursery.start_soon(self._keep, slot, one_more, name=f"http front {slot}")
                with trio.move_on_after(START_TIMEOUT):
                    await all_serving.wait()
                if not all_serving.is_set():
                    raise FrontFailed(
                        f"the HTTP front processes did not start within {START_TIMEOUT:g}s"
                    )
                task_status.started()
        finally:
            self.closed.set()
            self.wrong_keys.close()
            self._seats.close()

    async def _keep(self, slot: int, started: Callable[[], None]) -> None:
        """Front `slot`, and each that replaces it, until drained. Until one has served, a
        front that cannot start, or stops by itself, is `FrontFailed` (another would fail too:
        an import, a certificate); one killed by a signal is replaced, then as later."""
        backoff = Backoff(RESTART_MIN, RESTART_MAX)
        served = False
        while not self._draining:
            start = _Start(None if served else started)
            began = trio.current_time()
            try:
                code = await self._run(slot, start.serving)
            except OSError as exc:
                if not served:
                    raise FrontFailed(f"cannot start an HTTP front process: {exc}") from None
                log.error("http front %d: cannot start another: %s", slot, exc)
                code = None
            except Exception:  # a bug here must not take paging down: logged, counted, retried
                if not served:
                    raise
                log.exception("http front %d failed", slot)
                code = None
            served = served or start.served
            if code == 0 and not self._draining:
                # A clean exit is a front told to stop by a signal: systemd's SIGTERM at a stop,
                # which reaches pagerd at the same moment. Give pagerd's own stop a moment.
                with trio.move_on_after(RESTART_MIN):
                    await self._drained.wait()
            if self._draining:
                return
            if not served and (code is None or code >= 0):
                raise FrontFailed(
                    f"an HTTP front process exited with {code} before it served (see its error"
                    " above)"
                )
            self._metrics.http_fronts_replaced.inc()
            log.warning("http front %d exited (code %s); starting another", slot, code)
            if trio.current_time() - began < STEADY:
                await backoff.wait()
            else:
                backoff.reset()

    async def _run(self, slot: int, serving: Callable[[], None]) -> int | None:
        """One front process in slot `slot`, served until its channel closes; its exit code."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening = [listener.socket.fileno() for listener in self._listeners]
            args = [
                sys.executable, "-m", "pagerd.front.http.process",
                "--channel", str(theirs.fileno()),
                *(f"--listen={fd}" for fd in listening),
                "--seats", str(self._seats.fd),
                "--slots", str(self._count),
                "--slot", str(slot),
                "--log-level", self._log_level,
            ]  # fmt: skip
            self._seats.reset(slot)  # the last front of this slot took its connections with it
            process = await trio.lowlevel.open_process(
                args, pass_fds=(theirs.fileno(), *listening, self._seats.fd),
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()

        def hung() -> None:
            self._metrics.http_fronts_hung.inc()
            if process.returncode is None:
                process.kill()  # its end of the channel closes: `serve` returns

        stream = trio.SocketStream(trio.socket.from_stdlib_socket(mine))
        channel = _Channel(stream, self, serving, hung)
        self._channels[slot] = channel
        try:
            channel.send(self._configure)
            if self._draining:
                channel.send(encode(Drain()))
            await channel.serve()
            with trio.move_on_after(EXIT_TIMEOUT):
                await process.wait()
        finally:
            del self._channels[slot]
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await channel.aclose()
            self._seats.reset(slot)
        return process.returncode
