"""What the integrations' parsers share: how an event finds its service, and their answers.

An integration (`[integrations.NAME]` in the config) is given to a parser as an
`IntegrationRoute`; the parser turns one request body into events for services (`Routed`), or
refuses it (`Refused`) when it can never be accepted: the whole body (not JSON, not the
sender's format), or, for a body of many alerts (Alertmanager's), only the alerts that cannot
be routed. Nothing here reads the config or
the network: the front builds the route and sends the events.
"""

from __future__ import annotations

import hmac
from collections.abc import Container, Sequence
from typing import Final, Literal, TypeAlias

import attrs

from pager.domain import Event, is_service_name
from pager.text import clip

IntegrationType: TypeAlias = Literal["alertmanager", "events-v2"]

SHOWN: Final = 100
"""Characters of a name the sender gave that a refusal quotes."""

EVENTS_V2_FIELDS: Final = ("source", "component", "group", "class")
"""The `payload` fields an events-v2 integration's `service_label` may name; any other value
names a key of `payload.custom_details`."""


@attrs.frozen
class IntegrationRoute:
    """One configured integration, as its parser needs it.

    The service of each event is `service` if set, else the value of `service_label`: an
    Alertmanager label, or for Events v2 a `payload` field (`source`, `component`, `group`,
    `class`) or a key of `payload.custom_details`. `services`, if set, is the allow-list:
    an event for any other service is refused.
    """

    name: str
    type: IntegrationType
    service: str | None = None
    service_label: str | None = None
    services: frozenset[str] | None = None
    heartbeat_alert: str | None = None
    """Alertmanager only: the `alertname` of an always-firing alert (its `Watchdog`) that is a
    heartbeat check-in of its service, never an alert; its resolve is ignored."""

    def __attrs_post_init__(self) -> None:
        if (self.service is None) == (self.service_label is None):
            raise ValueError("an integration needs exactly one of service and service_label")

    def service_for(self, name: str | None, known: Container[str]) -> str | Refused:
        """The service an event names (`name`, None if it names none), or why it is refused."""
        if self.service is not None:
            name = self.service
        elif name is None or name == "":
            where = "label" if self.type == "alertmanager" else "field"
            return Refused(
                400, f"the event has no {where} {self.service_label!r} naming its service"
            )
        if self.services is not None and name not in self.services:
            return Refused(
                403,
                f"service {_shown(name)} is not among this integration's services",
                "forbidden",
            )
        if not is_service_name(name) or name not in known:
            return Refused(404, f"unknown service {_shown(name)}", "unknown_service")
        return name


def _shown(name: str) -> str:
    """A name the sender gave, quoted for a refusal, cut to `SHOWN` characters: a label's value
    is as long as the body allows, and the refusal goes to a log line and back to the sender."""
    return repr(clip(name, SHOWN))


@attrs.frozen
class Routed:
    """One event for one service."""

    service: str
    event: Event


@attrs.frozen
class Refused:
    """A request that will never be accepted as it is: the HTTP status and the reason (safe to
    show: it quotes only what the sender sent, never a key)."""

    status: int
    message: str
    code: str = "bad_request"
    errors: tuple[str, ...] = ()


@attrs.frozen(repr=False)
class KeyedRoute:
    """An integration and its key, for the one endpoint whose key is in the body (Events v2's
    `routing_key`). The key is never shown (`repr` leaves it out)."""

    route: IntegrationRoute
    key: bytes

    def __repr__(self) -> str:
        return f"KeyedRoute({self.route!r})"


def find_by_key(integrations: Sequence[KeyedRoute], key: str) -> IntegrationRoute | None:
    """The integration whose key is `key`, compared in constant time with every one of them
    (no early exit: how long it takes says nothing about which key came close)."""
    given = key.encode("utf-8", "surrogateescape")
    found = None
    for keyed in integrations:
        if hmac.compare_digest(keyed.key, given):
            found = keyed.route
    return found
