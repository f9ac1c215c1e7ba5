"""Building each channel's transport from its settings: the adapters behind the `Transport` port."""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
from pagerd.delivery.transports.http import open_client
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
    each send: a rotation reaches lanes a reload kept)."""

    reply_codes: ReplyCodes
    keys: Callable[[], SigningKeys]


def build_lanes(
    config: Config,
    clock: Clock,
    file_offload: Offload,
    reuse: Mapping[str, LaneSpec] | None = None,
    overrides: Mapping[str, Transport] | None = None,
    answering: Answering | None = None,
    wording: Wording = PLAIN,
) -> dict[str, LaneSpec]:
    """A lane for every channel, the configured ones and the others (which fail what they get).

    A lane in `reuse` whose channel settings are unchanged is kept as it is (a reload), so its
    connections and rate limit carry on; `overrides` replaces transports (tests, dry runs).
    `answering` makes pages answerable (reply codes, Slack buttons); `wording` says what each
    page says (it reads the running config and keys at each send, so a kept lane follows a
    reload's templates and a rotated key).
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
            log_transport = log_transport or LogTransport(config.log_path, file_offload, clock)
            lanes[name] = LaneSpec(channel, log_transport)
        else:
            lanes[name] = _network_lane(channel, clock, answering, wording)
    return lanes


def _same_log(lane: LaneSpec, config: Config) -> bool:
    transport = lane.transport
    return not isinstance(transport, LogTransport) or transport.path == config.log_path


def _network_lane(
    channel: Channel, clock: Clock, answering: Answering | None, wording: Wording
) -> LaneSpec:
    settings = channel.settings
    if channel.transport == "unconfigured":
        return LaneSpec(channel, UnconfiguredTransport(channel.name))
    if isinstance(settings, SmtpSettings):
        return LaneSpec(
            channel,
            SmtpTransport(settings, channel.timeout, channel.concurrency, clock, wording),
        )
    assert isinstance(settings, TwilioSettings | SlackSettings | WebhookSettings)
    client = open_client(channel.timeout, channel.concurrency, settings.ca_file)
    transport: Transport
    if isinstance(settings, TwilioSettings):
        codes = answering.reply_codes if answering is not None else None
        transport = TwilioTransport(settings, client, codes, wording)
    elif isinstance(settings, SlackSettings):
        keys = answering.keys if answering is not None else None
        transport = SlackTransport(client, settings, keys, wording)
    else:
        transport = WebhookTransport(settings, client)
    return LaneSpec(channel, transport, client.aclose)
