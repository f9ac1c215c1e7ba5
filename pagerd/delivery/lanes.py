"""Building each channel's transport from its settings: the adapters behind the `Transport` port.

The `log` channel and a channel the config lacks are delivered in the daemon's own process; the
others (SMTP, Twilio, Slack, webhooks) through `pool` when there is one (`[delivery] workers`,
see `pagerd.delivery.workers`), which builds the same transports in its worker processes with
`network_transport`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, Protocol

import attrs

from pager.domain import CHANNELS
from pager.ports import Transport
from pagerd.access.keys import SigningKeys
from pagerd.config import Config
from pagerd.config.channels import (
    Channel,
    SlackSettings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
    unconfigured_channel,
)
from pagerd.delivery.outbox import LaneSpec
from pagerd.delivery.transports.http import Client, HttpxClient, open_client
from pagerd.delivery.transports.log import LogTransport
from pagerd.delivery.transports.slack import SlackTransport
from pagerd.delivery.transports.smtp import SmtpTransport
from pagerd.delivery.transports.twilio import ReplyCodes, TwilioTransport
from pagerd.delivery.transports.unconfigured import UnconfiguredTransport
from pagerd.delivery.transports.webhook import WebhookTransport
from pagerd.delivery.wording import PLAIN, Wording
from pagerd.storage.offload import Offload
from pagerd.timing.clock import Clock


@attrs.frozen
class Answering:
    """What makes a page answerable where it arrives: SMS reply codes (`reply_codes`, giving
    None while replies are off) and the keys Slack buttons are signed with (`keys`, read at
    each send: a rotation reaches lanes a reload kept; None: no buttons)."""

    reply_codes: ReplyCodes
    keys: Callable[[], SigningKeys | None]


class Pool(Protocol):
    """Where network channels are delivered when not in this process (`WorkerPool`)."""

    def lane(self, channel: Channel, answering: Answering | None) -> LaneSpec: ...


def build_lanes(
    config: Config,
    clock: Clock,
    file_offload: Offload,
    reuse: Mapping[str, LaneSpec] | None = None,
    overrides: Mapping[str, Transport] | None = None,
    answering: Answering | None = None,
    wording: Wording = PLAIN,
    pool: Pool | None = None,
) -> dict[str, LaneSpec]:
    """A lane for every channel, the configured ones and the others (which fail what they get).

    A lane in `reuse` whose channel settings are unchanged is kept as it is (a reload), so its
    connections and rate limit carry on; `overrides` replaces transports (tests, dry runs).
    `answering` makes pages answerable (reply codes, Slack buttons); `wording` says what each
    page says (it reads the running config and keys at each send, so a kept lane follows a
    reload's templates and a rotated key). `pool`, if given, sends what goes over the network
    (see the module's docstring), worded there from what the pool was given (its `Wording`).
    """
    reuse = reuse or {}
    overrides = overrides or {}
    log_transport: LogTransport | None = None
    lanes: dict[str, LaneSpec] = {}
    for name in CHANNELS:
        channel = config.channels.get(name) or unconfigured_channel(name)
        kept = reuse.get(name)
        if kept is not None and kept.channel == channel and _same_log(kept, config):
            lanes[name] = kept
            continue
        if name in overrides:
            lanes[name] = LaneSpec(channel, overrides[name])
        elif channel.transport == "log":
            log_transport = log_transport or LogTransport(
                config.log_path, file_offload, clock, wording
            )
            lanes[name] = LaneSpec(channel, log_transport)
        elif channel.transport == "unconfigured":
            lanes[name] = LaneSpec(channel, UnconfiguredTransport(channel.name))
        elif pool is not None:
            lanes[name] = pool.lane(channel, answering)
        else:
            transport, close = network_transport(channel, clock, "httpx", answering, wording)
            lanes[name] = LaneSpec(channel, transport, close)
    return lanes


def _same_log(lane: LaneSpec, config: Config) -> bool:
    transport = lane.transport
    return not isinstance(transport, LogTransport) or transport.path == config.log_path


def network_transport(
    channel: Channel,
    clock: Clock,
    client: Literal["httpx", "curl"],
    answering: Answering | None = None,
    wording: Wording = PLAIN,
) -> tuple[Transport, Callable[[], Awaitable[None]] | None]:
    """The transport of a network channel (SMTP, Twilio, Slack, webhook), and how to release
    it; an HTTP one posts with httpx (the daemon's process) or libcurl (a worker's)."""
    settings = channel.settings
    if isinstance(settings, SmtpSettings):
        smtp = SmtpTransport(settings, channel.timeout, channel.concurrency, clock, wording)
        return smtp, None
    assert isinstance(settings, TwilioSettings | SlackSettings | WebhookSettings)
    poster: Client
    if client == "curl":
        # Imported here: only a worker loads libcurl.
        from pagerd.delivery.transports.curl import CurlClient

        poster = CurlClient(channel.timeout, channel.concurrency, settings.ca_file)
    else:
        poster = HttpxClient(open_client(channel.timeout, channel.concurrency, settings.ca_file))
    transport: Transport
    if isinstance(settings, TwilioSettings):
        codes = answering.reply_codes if answering is not None else None
        transport = TwilioTransport(settings, poster, codes, wording)
    elif isinstance(settings, SlackSettings):
        keys = answering.keys if answering is not None else None
        transport = SlackTransport(poster, settings, keys, wording)
    else:
        transport = WebhookTransport(settings, poster)
    return transport, poster.aclose
