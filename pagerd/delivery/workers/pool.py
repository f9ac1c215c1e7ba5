"""The daemon's side of the delivery workers: the processes, kept running, and each send's trip.

`WorkerPool.lane(channel, answering)` gives the outbox a lane whose transport hands each send
to the least busy worker and waits for its outcome, so the outbox stays the one owner of every
notification's state, its rate limits and its per-channel `concurrency`, and records each
outcome as it does for a transport in its own process.

What needs the daemon's state is done here, before the hand-over: an SMS's reply code is stored
(through the store's offload, as the Twilio transport does in the daemon's own process) and
goes with the send, as does whether the page's policy lets its links resolve. The worker words
the page itself from the templates, `http.public_url` and the signing keys (`Texts`), which the
pool gives every worker before its first send and again, before the next send, whenever a
reload or a key rotation changed them (`Wording.words`).

A worker that dies (a kill -9, a crash) is replaced; so is one that does not answer a send
within the channel's timeout and `HANG_GRACE` (it keeps that timeout itself, so it is hung): it
is killed first. The sends it had are in the ambiguous window (delivered or not, nobody knows):
each fails as a transient error, retried with the same idempotency key, and is counted
(`pagerd_delivery_ambiguous_sends_total`).

Bounded both ways: what waits to be written to a worker is at most the sends in progress (each
outbox task waits for its outcome before it takes another) and a few lane and wording
messages (one each a reload at most); a worker
reads no more than `MAX_IN_FLIGHT` sends ahead, and past that the pipe fills and writing waits.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import subprocess
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from pager.domain import Notify
from pager.ports import PermanentError, TransientError
from pagerd.config.channels import Channel, TwilioSettings
from pagerd.delivery.lanes import Answering
from pagerd.delivery.outbox import LaneSpec
from pagerd.delivery.transports.twilio import ReplyCodes, stored_code
from pagerd.delivery.wording import PLAIN, Wording, Words
from pagerd.delivery.workers.wire import (
    Close,
    Failed,
    Frames,
    Log,
    Ready,
    Send,
    Sent,
    Texts,
    ToWorker,
    finite,
    frame,
    from_worker,
    open_lane,
    texts_of,
)
from pagerd.operations.metrics import Metrics
from pagerd.timing.timers import Backoff

log = logging.getLogger("pagerd.workers")

HANG_GRACE: Final = 2.0
"""Beyond a send's channel timeout: a worker that has not answered by then is hung. Less than
the outbox's own grace (`SEND_GRACE`), so the worker is replaced before the outbox gives up."""
CLOSE_TIMEOUT: Final = 2.0
"""At a stop, how long a worker has to exit once its pipe is closed, before it is killed."""
QUICK_DEATH: Final = 1.0
"""A worker that dies within this long of its start is restarted after a growing pause (up to
`RESTART_MAX`): a worker that cannot start must not be restarted in a tight loop."""
RESTART_MAX: Final = 10.0


def default_workers() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) or 1


@attrs.frozen
class WorkerStatistics:
    running: int
    ready: int
    restarts: int
    deaths: int
    hung: int
    ambiguous: int


@attrs.define(eq=False)
class _Call:
    id: int
    outcome: Sent | Failed | None = None
    lost: bool = False  # the worker died or hung with it: the outcome is unknown
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False)
class _Worker:
    number: int
    process: trio.Process
    calls: dict[int, _Call] = attrs.Factory(dict)
    outgoing: deque[bytes] = attrs.Factory(deque)
    wake: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    ready: bool = False
    hung: bool = False
    gone: bool = False

    def put(self, message: ToWorker) -> None:
        self.outgoing.append(frame(message))
        self.wake.unpark()


class WorkerPool:
    def __init__(
        self,
        size: int,
        metrics: Metrics | None = None,
        command: list[str] | None = None,
        wording: Wording = PLAIN,
    ) -> None:
        """`wording` is the daemon's: what the workers word pages with (read before each
        send)."""
        self.size = size
        self._metrics = metrics or Metrics()
        self._command = command or [sys.executable, "-m", "pagerd.delivery.workers"]
        self._wording = wording
        self._words: Words | None = None  # as the workers have them (`_texts`)
        self._texts = texts_of(Words())
        self._lanes: dict[int, tuple[Channel, bool]] = {}
        self._lane_numbers = itertools.count(1)
        self._call_numbers = itertools.count(1)
        self._workers: dict[int, _Worker] = {}
        self._ready = trio.lowlevel.ParkingLot()
        self._wanted = trio.Event()
        self._restarts = self._deaths = self._hung = self._ambiguous = 0

    # What the outbox and the composition root use. --------------------------------------

    def lane(self, channel: Channel, answering: Answering | None = None) -> LaneSpec:
        """A lane for `channel` whose sends go to the workers (now, and to those started later);
        with `answering`, its pages are answerable (reply codes, Slack buttons)."""
        number = next(self._lane_numbers)
        self._lanes[number] = (channel, answering is not None)
        for worker in self._workers.values():
            worker.put(open_lane(number, channel, answering is not None))
        self._wanted.set()
        codes = None
        if answering is not None and isinstance(channel.settings, TwilioSettings):
            codes = answering.reply_codes
        transport = _WorkerTransport(self, number, channel, codes)
        return LaneSpec(channel, transport, self._closer(number))

    def pids(self) -> list[int]:
        """The running workers' process ids (tests, `ps`)."""
        return [w.process.pid for w in self._workers.values() if w.ready and not w.gone]

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            running=len(self._workers),
            ready=sum(w.ready and not w.gone for w in self._workers.values()),
            restarts=self._restarts,
            deaths=self._deaths,
            hung=self._hung,
            ambiguous=self._ambiguous,
        )

    async def run(self) -> None:
        """Keep `size` workers running, from the first lane on, until cancelled; then close
        their pipes and let them exit (killed if they do not within `CLOSE_TIMEOUT`)."""
        async with trio.open_nursery() as nursery:
            for number in range(self.size):
                nursery.start_soon(self._slot, number, name=f"delivery worker {number}")

    # Sends. ------------------------------------------------------------------------------

    async def send(
        self, lane: int, channel: Channel, notification: Notify, reply_code: int | None = None
    ) -> str | None:
        worker = await self._pick(trio.current_time() + channel.timeout)
        # Whether its policy lets a page close the incident: a resolve link, a Resolve button,
        # "4c to close" in an SMS's reply hint.
        resolve = self._wording.allows_resolve(notification)
        self._word()  # no wait from here to the send: the worker words it with these
        call = _Call(next(self._call_numbers))
        worker.calls[call.id] = call
        worker.put(Send(call.id, lane, notification, reply_code, resolve))
        try:
            with trio.move_on_after(channel.timeout + HANG_GRACE):
                await call.done.wait()
            if not call.done.is_set():
                self._hang(worker, channel)
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await call.done.wait()  # set by the worker's end, once it is reaped
                call.lost = True
        finally:
            worker.calls.pop(call.id, None)
        outcome = call.outcome
        if call.lost or outcome is None:
            self._ambiguous += 1
            self._metrics.worker_ambiguous_sends.inc(channel.name)
            log.warning(
                "delivery worker %d %s mid-send of %s: the outcome is unknown, it will be sent "
                "again with the same idempotency key",
                worker.number, "hung" if worker.hung else "died", notification.id,
            )  # fmt: skip
            raise TransientError(
                f"delivery worker {'hung' if worker.hung else 'died'} mid-send: the outcome is "
                "unknown (sent again with the same idempotency key)"
            )
        if isinstance(outcome, Sent):
            return outcome.provider_id
        if outcome.kind == "permanent":
            raise PermanentError(outcome.reason)
        raise TransientError(outcome.reason, finite(outcome.retry_after))

    async def _pick(self, deadline: float) -> _Worker:
        """The ready worker with the fewest sends in progress; waits for one (a start, a
        replacement) until `deadline`."""
        with trio.move_on_at(deadline):
            while True:
                ready = [w for w in self._workers.values() if w.ready and not w.gone]
                if ready:
                    return min(ready, key=lambda w: len(w.calls))
                await self._ready.park()
        raise TransientError("no delivery worker is running (starting, or failing to start)")

    def _word(self) -> Texts:
        """The workers' `Texts`, given to each again first if a reload or a rotation changed
        them (`Wording.words` gives the same object until then: one comparison a send)."""
        words = self._wording.words()
        if words is not self._words:
            self._words, self._texts = words, texts_of(words)
            for worker in self._workers.values():
                worker.put(self._texts)
        return self._texts

    def _hang(self, worker: _Worker, channel: Channel) -> None:
        if worker.gone or worker.hung:
            return
        worker.hung = True
        log.error(
            "delivery worker %d (pid %d) did not answer a %s send within %gs: killed, replaced",
            worker.number, worker.process.pid, channel.name, channel.timeout + HANG_GRACE,
        )  # fmt: skip
        _kill(worker.process)

    def _closer(self, number: int) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            self._lanes.pop(number, None)
            for worker in self._workers.values():
                worker.put(Close(number))

        return close

    # The processes. ----------------------------------------------------------------------

    async def _slot(self, number: int) -> None:
        backoff = Backoff(0.1, RESTART_MAX)
        first = True
        while True:
            await self._wanted.wait()
            if not first:
                self._restarts += 1
                self._metrics.worker_restarts.inc()
            first = False
            started = trio.current_time()
            try:
                await self._run_worker(number)
            except OSError as exc:
                log.error("cannot start delivery worker %d: %s", number, exc.strerror or exc)
            except Exception:
                # A bug of ours: logged and counted, and the worker replaced, never raised
                # (raised, it would take the daemon and its paging down).
                log.exception("delivery worker %d: unexpected error; replacing it", number)
                self._metrics.outbox_errors.inc("worker pool")
            if trio.current_time() - started < QUICK_DEATH:
                await backoff.wait()
            else:
                backoff.reset()

    async def _run_worker(self, number: int) -> None:
        process = await trio.lowlevel.open_process(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        worker = _Worker(number, process)
        worker.put(self._word())
        self._workers[number] = worker
        for lane, (channel, answering) in self._lanes.items():
            worker.put(open_lane(lane, channel, answering))
        ended = False  # by itself (died, or killed as hung), not by a stop
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, worker)
                await self._read(worker)
                ended = True
                nursery.cancel_scope.cancel()
        finally:
            worker.gone = True
            del self._workers[number]
            for call in worker.calls.values():
                call.lost = True
                call.done.set()
            with trio.CancelScope(shield=True):
                await _end(process, 0.0 if ended else CLOSE_TIMEOUT)
            if ended:
                self._count_death(worker)

    def _count_death(self, worker: _Worker) -> None:
        reason = "hung" if worker.hung else "died"
        self._deaths += 1
        self._hung += worker.hung
        self._metrics.worker_deaths.inc(reason)
        code = worker.process.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"status {code}"
        log.error(
            "delivery worker %d (pid %d) %s (%s) with %d sends in progress; replacing it",
            worker.number, worker.process.pid, reason, how, len(worker.calls),
        )  # fmt: skip

    async def _write(self, worker: _Worker) -> None:
        stdin = worker.process.stdin
        assert stdin is not None
        try:
            while True:
                if not worker.outgoing:
                    await worker.wake.park()
                    continue
                data = b"".join(worker.outgoing)
                worker.outgoing.clear()
                await stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            _kill(worker.process)  # its reader sees the end

    async def _read(self, worker: _Worker) -> None:
        """Outcomes in, until the worker's end (its pipe closed: exited, killed, or broken)."""
        stdout = worker.process.stdout
        assert stdout is not None
        frames = Frames()
        while True:
            try:
                data = await stdout.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                messages = [from_worker(raw) for raw in frames.feed(data)]
            except Exception as exc:
                log.error("delivery worker %d sent a broken frame (%s): killed", worker.number, exc)
                _kill(worker.process)
                return
            for message in messages:
                if isinstance(message, Sent | Failed):
                    call = worker.calls.get(message.id)
                    if call is not None:  # else its sender gave up (cancelled)
                        call.outcome = message
                        call.done.set()
                elif isinstance(message, Log):
                    log.log(message.level, "worker %d: %s", worker.number, message.text)
                elif isinstance(message, Ready):
                    worker.ready = True
                    log.info("delivery worker %d ready (pid %d)", worker.number, message.pid)
                    self._ready.unpark_all()


class _WorkerTransport:
    """The `Transport` of a lane delivered by the workers; `reply_codes`, an SMS lane's where
    replies are taken."""

    def __init__(
        self, pool: WorkerPool, lane: int, channel: Channel, reply_codes: ReplyCodes | None
    ) -> None:
        self._pool = pool
        self.lane = lane
        self.channel = channel
        self._reply_codes = reply_codes

    async def send(self, notification: Notify) -> str | None:
        code = None
        if self._reply_codes is not None:
            # Stored before the page leaves: a reply can never name a code the store lacks.
            code = await stored_code(self._reply_codes, notification)
        return await self._pool.send(self.lane, self.channel, notification, code)


def _kill(process: trio.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def _end(process: trio.Process, within: float) -> None:
    """Close the worker's pipes (its cue to exit), wait up to `within`, then kill it."""
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            await trio.aclose_forcefully(stream)
    with trio.move_on_after(within if within > 0 else 0):
        await process.wait()
    if process.returncode is None:
        _kill(process)
        with trio.move_on_after(math.inf):
            await process.wait()
