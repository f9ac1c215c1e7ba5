"""The composition root: builds the store, actors, scheduler, outbox and server from the config,
wires them together, and runs them until asked to stop."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Final

import attrs
import trio

from pager.domain import CHANNELS
from pager.ports import Transport
from pagerd.actors import Services
from pagerd.channels import (
    Channel,
    SlackSettings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
    unconfigured_channel,
)
from pagerd.clock import Clock
from pagerd.commits import Committer
from pagerd.config import Config

__all__ = ["Config", "Daemon", "StartupError", "serve"]
from pagerd.listen import SocketInUse, open_unix_listener
from pagerd.offload import Offload, in_thread
from pagerd.outbox import Outbox
from pagerd.scheduler import Scheduler
from pagerd.server import Server
from pagerd.store import Store, StoreError
from pagerd.transports.http import open_client
from pagerd.transports.log import LogTransport
from pagerd.transports.slack import SlackTransport
from pagerd.transports.smtp import SmtpTransport
from pagerd.transports.twilio import TwilioTransport
from pagerd.transports.unconfigured import UnconfiguredTransport
from pagerd.transports.webhook import WebhookTransport

log = logging.getLogger(__name__)

SHUTDOWN_GRACE: Final = 5.0
OUTBOX_CAPACITY: Final = 10_000


class StartupError(Exception):
    """pagerd cannot start; the message says why, for the operator."""


@attrs.frozen
class Daemon:
    """A running daemon's parts, for status, tests and benchmarks to look into."""

    config: Config
    services: Services
    scheduler: Scheduler
    outbox: Outbox
    committer: Committer
    store: Store
    server: Server


@contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock: two daemons on one database would page twice."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "pagerd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot use state folder {state_dir}: {exc}") from None
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
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run pagerd until `stop` is set, then shut down in order: stop accepting, let requests
    already read finish (for up to `SHUTDOWN_GRACE` seconds), stop the rest, close the database.

    `task_status.started()` is called once the database is recovered and the socket listens.
    `transports` replaces the configured transport of some channels (tests, dry runs).
    """
    clock = clock or Clock()
    store_offload = offload or in_thread(trio.CapacityLimiter(1))
    file_offload = offload or in_thread(trio.CapacityLimiter(1))
    with _exclusive(config.state_dir):
        try:
            store = await store_offload(lambda: Store.open(config.database))
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        try:
            await _run(
                config,
                stop,
                clock,
                store,
                store_offload,
                file_offload,
                transports or {},
                outbox_capacity,
                task_status,
            )
        finally:
            with trio.CancelScope(shield=True):
                await store_offload(store.close)


async def _open_transports(
    config: Config, clock: Clock, file_offload: Offload, resources: AsyncExitStack
) -> dict[str, tuple[Channel, Transport]]:
    """A transport for every channel; HTTP clients are closed when `resources` is."""
    log_transport = LogTransport(config.log_path, file_offload, clock)
    lanes: dict[str, tuple[Channel, Transport]] = {}
    for name in CHANNELS:
        channel = config.channels.get(name)
        if channel is None:
            lanes[name] = (unconfigured_channel(name), UnconfiguredTransport(name))
            continue
        transport: Transport
        settings = channel.settings
        if channel.transport == "log":
            transport = log_transport
        elif isinstance(settings, SmtpSettings):
            transport = SmtpTransport(settings, channel.timeout, channel.concurrency, clock)
        else:
            assert isinstance(settings, TwilioSettings | SlackSettings | WebhookSettings)
            client = await resources.enter_async_context(
                open_client(channel.timeout, channel.concurrency, settings.ca_file)
            )
            if isinstance(settings, TwilioSettings):
                transport = TwilioTransport(settings, client)
            elif isinstance(settings, SlackSettings):
                transport = SlackTransport(client)
            else:
                transport = WebhookTransport(settings, client)
        lanes[name] = (channel, transport)
    return lanes


async def _run(
    config: Config,
    stop: trio.Event,
    clock: Clock,
    store: Store,
    store_offload: Offload,
    file_offload: Offload,
    transports: Mapping[str, Transport],
    outbox_capacity: int,
    task_status: trio.TaskStatus[Daemon],
) -> None:
    states = await store_offload(store.load_states)
    for name, state in states.items():
        if state.incident is not None and name not in config.services:
            log.warning(
                "service=%s has an open incident but is no longer configured: it will not "
                "escalate until it is configured again",
                name,
            )
    try:
        bound = await open_unix_listener(config.socket)
    except (SocketInUse, OSError) as exc:
        raise StartupError(f"cannot listen on {config.socket}: {exc}") from None
    committer = Committer(store, store_offload)
    scheduler = Scheduler(clock)
    try:
        async with AsyncExitStack() as resources, trio.open_nursery() as core:
            lanes = await _open_transports(config, clock, file_offload, resources)
            for name, transport in transports.items():
                lanes[name] = (lanes[name][0], transport)
            outbox = Outbox(store, committer, lanes, store_offload, clock, outbox_capacity)
            services = Services(config, states, committer, scheduler, outbox, clock)
            server = Server(services, outbox)
            core.start_soon(committer.run, name="committer")
            await core.start(services.run)
            core.start_soon(scheduler.run, services.offer, name="scheduler")
            core.start_soon(outbox.run, name="outbox")
            await core.start(server.serve, bound.listener)
            open_incidents = sum(1 for s in states.values() if s.incident is not None)
            log.info(
                "ready socket=%s services=%d open_incidents=%d",
                config.socket,
                len(config.services),
                open_incidents,
            )
            task_status.started(
                Daemon(config, services, scheduler, outbox, committer, store, server)
            )
            await stop.wait()
            log.info("stopping")
            server.drain()
            bound.remove()
            with trio.move_on_after(SHUTDOWN_GRACE):
                await server.closed.wait()
            core.cancel_scope.cancel()
    finally:
        bound.remove()
