"""A delivery worker process: sends what the daemon hands it, answers each send's outcome.

Started by `WorkerPool` as `python -m pagerd.delivery.workers`, with its standard input and
output as the pipes to the daemon (`wire`). It holds no notification state: a send in, an
outcome out. Each lane (a channel as configured) has its own transport, connections and
limits, and every send its own task, so a slow provider holds up only its own channel's sends.

It words each page itself, as the daemon's own process would (`pagerd.delivery.wording`): the
templates, `http.public_url` and pagerd's signing keys come over the pipe (`Texts`, again after
a reload or a key rotation), and with each send what needs the daemon's state (an SMS's reply
code, stored before the send is handed over; whether the policy lets links resolve). Composing
the text here keeps its CPU (Jinja2, the link tokens, Slack's signed buttons) off the daemon's
loop.

It ignores SIGTERM, SIGINT and SIGHUP: a stop (systemd signals the whole unit, a terminal the
whole process group) is the daemon's to order, so that sends in progress finish and are
recorded. It ends when its standard input does (the daemon closed it, or died), at once: sends
still in progress are abandoned, since nobody is left to record their outcome (an SMTP
exchange already past DATA, or a request already written, may still have reached the provider:
the ambiguous window, sent again with the same key by the daemon's next start).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import os
import signal
import sys
import traceback
from typing import Final

import attrs
import trio

from pager.domain import Notify
from pager.ports import DeliveryError, PermanentError, Transport
from pagerd.config.channels import Channel
from pagerd.delivery.lanes import Answering, network_transport
from pagerd.delivery.redact import Redactor, channel_secrets, for_target
from pagerd.delivery.wording import Wording, Words
from pagerd.delivery.workers.wire import (
    Close,
    Failed,
    FromWorker,
    Log,
    Open,
    Ready,
    Send,
    Sent,
    Texts,
    channel_of,
    frame,
    to_worker,
    words_of,
)
from pagerd.delivery.workers.wire import Frames as _Frames
from pagerd.timing.clock import Clock

MAX_TRACEBACK: Final = 8000
MAX_LOGS: Final = 256
"""Log records waiting for the pipe at most; past that the oldest are dropped (and counted)."""
MAX_IN_FLIGHT: Final = 4096
"""Sends in progress at most; past that the pipe is not read (back-pressure). The daemon sends
no more than its channels' `concurrency` together, far fewer."""

_sending: Final[contextvars.ContextVar[Send]] = contextvars.ContextVar("sending")
"""The send a task delivers (each send has a task, and each task its own context)."""


@attrs.define
class _Lane:
    channel: Channel
    transport: Transport
    close: object
    redactor: Redactor
    sending: int = 0
    closing: bool = False


class _Forward(logging.Handler):
    """Log records to the daemon, as `Log` messages; from any thread (SMTP logs from its own)."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        super().__init__()
        self._token = token
        self.records: collections.deque[Log] = collections.deque(maxlen=MAX_LOGS)
        self.wake = trio.Event()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name}: {record.getMessage()}"
        except Exception:
            text = f"{record.name}: (a record that cannot be formatted)"
        if len(self.records) == MAX_LOGS:
            self.dropped += 1
        self.records.append(Log(record.levelno, text))
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self.wake.set)


class _Given(Wording):
    """The wording of a worker's pages: `Words` as the daemon last gave them, and the resolve
    link where the daemon said, with the send, that the policy allows it."""

    def __init__(self, words: Words) -> None:
        super().__init__()
        self.given = words

    def words(self) -> Words:
        return self.given

    def allows_resolve(self, n: Notify) -> bool:
        return _sending.get().resolve


async def _given_code(n: Notify) -> int | None:
    """The reply code the daemon stored for this send (`Send.reply_code`)."""
    return _sending.get().reply_code


class Worker:
    def __init__(self, receive: trio.abc.ReceiveStream, send: trio.abc.SendStream) -> None:
        self._receive = receive
        self._send = send
        self._sending = trio.Lock()
        self._lanes: dict[int, _Lane] = {}
        self._slots = trio.Semaphore(MAX_IN_FLIGHT)
        self._clock = Clock()
        self._wording = _Given(Words())
        self._answering = Answering(_given_code, lambda: self._wording.given.keys)

    async def _tell(self, message: FromWorker) -> None:
        async with self._sending:
            await self._send.send_all(frame(message))

    async def run(self) -> None:
        forward = _Forward(trio.lowlevel.current_trio_token())
        root = logging.getLogger()
        root.handlers[:] = [forward]
        root.setLevel(logging.INFO)
        await self._tell(Ready(os.getpid()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_logs, forward)
            frames = _Frames()
            while True:
                data = await self._receive.receive_some(65536)
                if not data:
                    break  # the daemon closed the pipe, or is gone: nobody to answer
                for raw in frames.feed(data):
                    message = to_worker(raw)
                    if isinstance(message, Open):
                        self._open(message)
                    elif isinstance(message, Close):
                        await self._close(message.lane)
                    elif isinstance(message, Texts):
                        self._wording.given = words_of(message)
                    else:
                        await self._slots.acquire()
                        nursery.start_soon(self._deliver, message)
            nursery.cancel_scope.cancel()

    def _open(self, message: Open) -> None:
        channel = channel_of(message)
        answering = self._answering if message.answering else None
        transport, close = network_transport(channel, self._clock, "curl", answering, self._wording)
        redactor = Redactor(channel_secrets(channel.settings))
        self._lanes[message.lane] = _Lane(channel, transport, close, redactor)

    async def _close(self, number: int) -> None:
        lane = self._lanes.get(number)
        if lane is None:
            return
        lane.closing = True
        if lane.sending == 0:
            await self._release(number, lane)

    async def _release(self, number: int, lane: _Lane) -> None:
        del self._lanes[number]
        if callable(lane.close):
            try:
                await lane.close()
            except Exception:
                logging.getLogger("pagerd.worker").exception("closing a channel's client failed")

    async def _deliver(self, message: Send) -> None:
        try:
            lane = self._lanes.get(message.lane)
            if lane is None:
                await self._tell(Failed(message.id, "transient", "channel changed: sent again"))
                return
            lane.sending += 1
            _sending.set(message)
            try:
                outcome = await _attempt(lane, message.id, message.notify)
            finally:
                lane.sending -= 1
                if lane.closing and lane.sending == 0 and message.lane in self._lanes:
                    await self._release(message.lane, lane)
            await self._tell(outcome)
        finally:
            self._slots.release()

    async def _forward_logs(self, forward: _Forward) -> None:
        while True:
            await forward.wake.wait()
            forward.wake = trio.Event()
            while forward.records:
                await self._tell(forward.records.popleft())
            if forward.dropped:
                dropped, forward.dropped = forward.dropped, 0
                await self._tell(Log(logging.WARNING, f"{dropped} log records dropped"))


async def _attempt(lane: _Lane, number: int, n: Notify) -> Sent | Failed:
    """One send, its outcome as the outbox would read it (`Outbox._attempt`)."""
    try:
        provider_id = await lane.transport.send(n)
    except DeliveryError as exc:
        if isinstance(exc, PermanentError):
            return Failed(number, "permanent", exc.reason)
        return Failed(number, "transient", exc.reason, getattr(exc, "retry_after", None))
    except UnicodeError as exc:
        reason = f"cannot encode for {lane.channel.transport}: {type(exc).__name__}"
        return Failed(number, "permanent", reason)
    except Exception as exc:
        # A bug in a transport: logged (its traceback may quote what it sent: redacted), and
        # the page kept alive, as in the daemon's own process.
        text = for_target(lane.redactor, n.target).clean(traceback.format_exc(), MAX_TRACEBACK)
        logging.getLogger("pagerd.worker").error(
            "transport %s failed unexpectedly: %s", lane.channel.transport, text
        )
        return Failed(number, "transient", f"internal error in transport: {type(exc).__name__}")
    return Sent(number, provider_id)


async def _main() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    # Nothing else may write to the pipe the frames go through.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, sys.stdin.fileno())
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    async with stdin, stdout:
        # Broken: the daemon is gone.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await Worker(stdin, stdout).run()


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    trio.run(_main)
    # Now, without waiting for threads still in a transfer (SMTP's, or libcurl's abandoned
    # ones): their outcome has nobody to go to.
    os._exit(0)
