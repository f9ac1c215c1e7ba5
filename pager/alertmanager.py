"""Alertmanager's webhook payload (version 4), read into events; and Grafana's (version 1).

The shape is Alertmanager's own (notify/webhook/webhook.go `Message`, template/template.go
`Data` and `Alert`). Each alert is told apart by its `fingerprint`, never by its text: a firing
one is an `Alert` with `Source(integration, fingerprint)`, a resolved one a `Resolve` of it, so
the service is healthy again only once every alert that fired through this integration has
resolved (see `pager.domain.decide`). Both carry the alert's `startsAt`, which tells a copy of
an earlier firing, or a resolve of one, from the alert's latest ("Late firings" in
`pager.domain`). Fields Alertmanager may add later are ignored.

Grafana's webhook contact point sends the same payload with fields of its own (grafana/alerting,
receivers/webhook: `orgId`, `title`, `state`, `message`, and per alert `silenceURL`,
`dashboardURL`, `panelURL`, `values`, ...) and `version` "1": it is read the same way, and
told from other payloads of version 1 by its `orgId`.
"""

from __future__ import annotations

import re
from collections.abc import Container
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import attrs
import msgspec

from pager.domain import Alert, Heartbeat, Resolve, Source
from pager.integrations import IntegrationRoute, Refused, Routed
from pager.protocol import MAX_TEXT
from pager.text import clip, repair, with_link

VERSION: Final = "4"
GRAFANA_VERSION: Final = "1"
"""The `version` of Grafana's webhook contact point (grafana/alerting, receivers/webhook)."""
MAX_FINGERPRINT: Final = 256

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INT64: Final = 2**63


class WebhookAlert(msgspec.Struct, rename="camel"):
    status: Literal["firing", "resolved"]
    fingerprint: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: str = ""
    ends_at: str = ""
    generator_url: str = msgspec.field(default="", name="generatorURL")


class WebhookMessage(msgspec.Struct, rename="camel"):
    version: str
    alerts: list[WebhookAlert]
    receiver: str = ""
    status: str = ""
    group_labels: dict[str, str] = {}
    common_labels: dict[str, str] = {}
    common_annotations: dict[str, str] = {}
    external_url: str = msgspec.field(default="", name="externalURL")
    group_key: str = ""
    truncated_alerts: int = 0
    org_id: int | None = msgspec.field(default=None, name="orgId")
    """Grafana's organisation: only Grafana's webhook sends it (Alertmanager never does)."""


_decode = msgspec.json.Decoder(WebhookMessage).decode


def decode(body: bytes) -> WebhookMessage | Refused:
    """The payload, or why it is not one Alertmanager sends."""
    try:
        message = _decode(body)
    except msgspec.ValidationError as exc:
        return Refused(400, f"not an Alertmanager webhook payload: {exc}")
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        # DecodeError: not JSON; UnicodeDecodeError (a ValueError): not UTF-8; nested too deep.
        return Refused(400, f"not JSON: {exc}")
    grafana = message.version == GRAFANA_VERSION and message.org_id is not None
    if message.version != VERSION and not grafana:
        return Refused(
            400,
            f"webhook payload version {message.version!r} is not supported (only {VERSION!r},"
            f" and Grafana's {GRAFANA_VERSION!r})",
        )
    return message


def instant(text: str) -> int | None:
    """An RFC 3339 time as Go writes it (`startsAt`: "2026-11-30T21:24:22.814243Z"), in
    nanoseconds since the epoch, exact to the nanosecond; None if it is not one, or is Go's
    zero time (year 1: no time given), or is out of range."""
    found = _RFC3339.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = found.groups()
    try:
        at = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:  # the 30th of February, a leap second
        return None
    if at.year <= 1:
        return None
    offset = 0
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = (int(off_h) * 60 + int(off_m)) * 60 * (1 if sign == "+" else -1)
    seconds = (at - _EPOCH) // timedelta(seconds=1) - offset
    nanoseconds = seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
    return nanoseconds if -_INT64 <= nanoseconds < _INT64 else None


def message_of(alert: WebhookAlert) -> str:
    """What the incident says: the summary, else the description, else the alert's name, with
    a link to where it came from."""
    annotations, labels = alert.annotations, alert.labels
    text = (
        annotations.get("summary")
        or annotations.get("description")
        or labels.get("alertname")
        or f"alert {alert.fingerprint}"
    )
    if alert.generator_url:
        text = with_link(text, alert.generator_url)  # a page's `link` (`split_link`)
    return clip(repair(text), MAX_TEXT)


@attrs.frozen
class Unroutable:
    """One alert of a payload that can never be accepted as it is: its place in the payload
    (from 1), its fingerprint as sent, why (safe to show: it quotes only what the sender sent),
    and the reason in a word, for the metrics (`REASONS`)."""

    number: int
    fingerprint: str
    refused: Refused
    reason: str

    def describe(self) -> str:
        """The refusal in a line: `alert 2: unknown service 'nope'`."""
        return f"alert {self.number}: {self.refused.message}"


REASONS: Final = ("bad_fingerprint", "no_service_label", "not_in_services", "unknown_service")
"""Why an alert is unroutable, in a word: its fingerprint is empty or too long; it has no
`service_label` label; its service is not in the integration's `services`; no such service."""

_REASON_OF_CODE: Final = {"forbidden": "not_in_services", "unknown_service": "unknown_service"}


@attrs.frozen
class Batch:
    """A payload read: an event for each alert that can be routed (the firing ones first), and
    each alert that cannot, in the payload's order."""

    routed: list[Routed]
    refused: list[Unroutable] = attrs.Factory(list)


def events(message: WebhookMessage, route: IntegrationRoute, known: Container[str]) -> Batch:
    """One event per alert, the firing ones first; and every alert that can never be accepted
    (an unknown service, one outside the integration's `services`, no service label, no
    fingerprint), each with why. One such alert refuses itself, never its neighbours: a group
    (`group_by: [alertname]`) may mix services, and the others must page.

    Firing first: a payload is the state of a whole group at once, in no order that means
    anything (the real Alertmanager lists a newly firing alert after one resolved in the same
    flush). Taken in its order, the resolve would close the incident and the firing alert open
    a new one, paging again for a service that never recovered."""
    routed: list[Routed] = []
    resolved: list[Routed] = []
    refused: list[Unroutable] = []
    for number, alert in enumerate(message.alerts, 1):
        key = alert.fingerprint
        if not key or len(key) > MAX_FINGERPRINT:
            why = Refused(400, f"fingerprint must be 1 to {MAX_FINGERPRINT} characters")
            refused.append(Unroutable(number, key, why, "bad_fingerprint"))
            continue
        label = None if route.service_label is None else alert.labels.get(route.service_label)
        service = route.service_for(label, known)
        if isinstance(service, Refused):
            reason = _REASON_OF_CODE.get(service.code, "no_service_label")
            refused.append(Unroutable(number, key, service, reason))
            continue
        source = Source(route.name, key)
        if route.heartbeat_alert is not None and alert.labels.get("alertname") == (
            route.heartbeat_alert
        ):
            # The always-firing Watchdog: a check-in, never an alert; its resolve means nothing
            # (Alertmanager resolves it only when Prometheus stops: the silence is the alarm).
            if alert.status == "firing":
                routed.append(Routed(service, Heartbeat(by=route.name)))
            continue
        starts_at = instant(alert.starts_at)
        if alert.status == "firing":
            routed.append(Routed(service, Alert(message_of(alert), source, starts_at)))
        else:
            resolved.append(Routed(service, Resolve(source, starts_at)))
    return Batch(routed + resolved, refused)


def parse(body: bytes, route: IntegrationRoute, known: Container[str]) -> Batch | Refused:
    """`decode`, then `events`."""
    message = decode(body)
    if isinstance(message, Refused):
        return message
    return events(message, route, known)
