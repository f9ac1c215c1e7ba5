"""A front process: `python -m pagerd.front.http.process`, started by the core (`fronts.py`),
never by hand.

It serves HTTP on the listening sockets the core opened and handed to it, with the same
application and server as the core's own (`HttpApp`, `HttpServer`): routing, keys, bodies,
parsing and checking all happen here, on a core of their own, and only the events they make
cross to the core, over the private channel (`RemoteCore`). It gets its config from the core,
never from the file, and again at each reload.

It stops when the core asks (`Drain`: stop accepting, answer what is in flight) or on SIGTERM
or SIGINT (the same: systemd sends SIGTERM to the whole unit at a stop), and soon after the
channel closes (the core has gone: what is in flight is answered 503). SIGHUP is the core's:
ignored here.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Final

import trio

from pagerd.config.http import FrontConfig, tls_context
from pagerd.front.http.app import HttpApp
from pagerd.front.http.remote import RemoteCore
from pagerd.front.http.serve import HttpServer
from pagerd.front.http.shared import FrontWrongKeys, SharedSeats
from pagerd.front.http.table import routes
from pagerd.operations import logs
from pagerd.operations.failures import reason
from pagerd.operations.metrics import Metrics

log = logging.getLogger("pagerd.http.front")

GONE_GRACE: Final = 1.0
"""Seconds a front whose core has gone gives what is in flight to be answered (503)."""


class Front:
    """One front process's server, and what a new config changes in it."""

    def __init__(self, core: RemoteCore, seats: SharedSeats, metrics: Metrics) -> None:
        config = core.config()
        self.tls_on = config.http.tls is not None
        self.tls: ssl.SSLContext | None = None
        if config.http.tls is not None:
            self.tls = tls_context(*config.http.tls)
        # The table's routes, handled here; then those served in the core, forwarded whole.
        served = [*routes(core, metrics), *core.forwarded()]
        app = HttpApp(served, core, metrics, FrontWrongKeys(core))
        self.server = HttpServer(
            app,
            config.http.limits,
            lambda: self.tls,
            lambda: metrics.http_requests.inc("(busy)", "503"),
            seats=seats,
        )

    def configured(self, config: FrontConfig) -> None:
        """A reload: new limits from each connection's next wait, a new certificate for new
        connections (TLS turned on or off takes a restart, as in the core)."""
        self.server.limits = config.http.limits
        if self.tls_on and config.http.tls is not None:
            try:
                self.tls = tls_context(*config.http.tls)
            except (ssl.SSLError, OSError, ValueError) as exc:
                log.error(
                    "http front: cannot use the new TLS certificate; keeping the old: %s", exc
                )


async def serve(
    channel: socket.socket, listening: Sequence[socket.socket], seats: SharedSeats
) -> None:
    """Serve HTTP until asked to stop, or until the core has gone."""
    metrics = Metrics()
    core = RemoteCore(
        trio.SocketStream(trio.socket.from_stdlib_socket(channel)),
        metrics.http_requests,
        metrics.http_auth_failures,
        metrics.http_events_refused,
    )
    metrics.http_requests.changed = core.counted
    metrics.http_auth_failures.changed = core.counted
    metrics.http_events_refused.changed = core.counted
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in listening]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(core.run)
            front = Front(core, seats, metrics)
            core.configured = front.configured
            await nursery.start(front.server.serve, listeners)
            core.serving()
            stop = trio.Event()
            nursery.start_soon(_on_signal, signals, stop)
            nursery.start_soon(_relay, core.drain, stop)
            nursery.start_soon(_relay, core.gone, stop)
            await stop.wait()
            front.server.drain()
            async with trio.open_nursery() as waiting:
                waiting.start_soon(_relay_cancel, front.server.closed, waiting.cancel_scope)
                waiting.start_soon(_gone_grace, core, waiting.cancel_scope)
            with trio.move_on_after(GONE_GRACE):
                await core.flush()  # the last counts, so that the core's metrics have them
            nursery.cancel_scope.cancel()


async def _on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for signum in signals:
        log.info("http front: received %s; stopping", signal.Signals(signum).name)
        stop.set()


async def _relay(event: trio.Event, stop: trio.Event) -> None:
    await event.wait()
    stop.set()


async def _relay_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _gone_grace(core: RemoteCore, scope: trio.CancelScope) -> None:
    await core.gone.wait()
    await trio.sleep(GONE_GRACE)
    scope.cancel()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pagerd.front.http.process",
        description="An HTTP front process of pagerd (started by pagerd, never by hand).",
    )
    parser.add_argument("--channel", type=int, required=True, help="the channel's fd")
    parser.add_argument("--listen", type=int, action="append", default=[], help="a listener's fd")
    parser.add_argument("--seats", type=int, required=True, help="the shared seats' fd")
    parser.add_argument("--slots", type=int, required=True, help="how many fronts share them")
    parser.add_argument("--slot", type=int, required=True, help="this front's slot")
    parser.add_argument("--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.log_level)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    channel = socket.socket(fileno=args.channel)
    listening = [socket.socket(fileno=fd) for fd in args.listen]
    seats = SharedSeats(args.seats, args.slots, args.slot)
    try:
        trio.run(serve, channel, listening, seats)
    except Exception as exc:  # groups included: each cause in one line
        log.critical("http front stopped on an error: %s", reason(exc), exc_info=exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
