"""The integrations' handlers: a request's body in, an HTTP status and JSON body out.

The HTTP server (front/http/) authenticates the request, finds its integration, and calls one of
these; they know nothing of HTTP beyond the answer's status, so they are tested against the
daemon without a server. They parse and check the whole body here, in whichever process serves
HTTP, and hand the events to the core through its port (`pagerd/front/core.py`): the same
actors as the socket's, and the answer is given only once all of them are committed:

- 2xx: every event is committed (or changed nothing: a resend, a repeated delivery).
- 503 (with Retry-After): pagerd could not commit (the disk), or did not within `patience`
  (overloaded), or the service has too many alerts firing: a sender retries a 5xx, and
  retrying is safe, since what was committed is not counted twice.
- 4xx: the input can never be accepted as it is (bad payload, unknown service): nothing of it
  was recorded; or, for Alertmanager's payload of many alerts, those alerts can never be
  accepted, and every other one was committed. Alertmanager drops a 4xx.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import msgspec
import trio

from pager import alertmanager, events_v2
from pager.alertmanager import Unroutable
from pager.integrations import IntegrationRoute, KeyedRoute, Refused, find_by_key
from pagerd.front.core import Core, Outcome, Submission

__all__ = ["Answer", "alertmanager_webhook", "enqueue_events_v2"]

log = logging.getLogger("pagerd.integrations")

PATIENCE: Final = 10.0
"""Seconds an integration's request may wait for its events to be committed before it is told
503: Alertmanager gives up on a webhook after its own timeout (10 s by default)."""

RETRY_AFTER: Final = "5"

_encode = msgspec.json.Encoder().encode


@attrs.frozen
class Answer:
    """What to answer: the HTTP status, the JSON body, headers, and the result for metrics."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    result: str = "ok"
    refused: tuple[str, ...] = ()
    """The reason of each event of the request refused on its own (`alertmanager.REASONS`),
    for `pagerd_http_events_refused_total`; the others were processed."""


def _message(outcome: Outcome) -> str:
    """The sentence of an error reply line (its code, if it has none)."""
    line, result = outcome
    try:
        reply: dict[str, Any] = msgspec.json.decode(line)
        return str(reply["error"]["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return result


@attrs.frozen
class _Outcome:
    """How the routed events went: None if all committed, else the answer's status, result
    and reason."""

    status: int
    result: str
    message: str


async def _route(
    core: Core, submissions: Sequence[Submission], patience: float, integration: str
) -> _Outcome | None:
    """Hand `submissions` to the core as sent through `integration` (the history's `via`), and
    wait until each is decided and committed. `OverRate` goes up to the HTTP application."""
    outcomes: list[Outcome] | None = None
    with trio.move_on_after(patience):
        # Their answer is a count: the services' statuses are neither rendered nor sent.
        outcomes = await core.submit(integration, submissions, terse=True)
    if outcomes is None:
        # Whatever of it is committed later counts once: the sender's retry changes nothing.
        return _Outcome(503, "busy", f"pagerd did not commit the events within {patience:g} s")
    failed = [outcome for outcome in outcomes if outcome[1] != "ok"]
    for code, status in (
        ("unavailable", 503),
        ("internal", 503),
        ("too_many_alerts", 503),
        ("unknown_service", 404),
    ):
        for outcome in failed:
            if outcome[1] == code:
                return _Outcome(status, code, _message(outcome))
    if failed:
        return _Outcome(400, failed[0][1], _message(failed[0]))
    return None


def _retry(status: int) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", RETRY_AFTER),) if status == 503 else ()


def _refused(refused: Refused) -> Answer:
    answer = {"status": "error", "code": refused.code, "message": refused.message}
    return Answer(refused.status, _encode(answer), result=refused.code)


async def alertmanager_webhook(
    core: Core, route: IntegrationRoute, body: bytes, *, patience: float = PATIENCE
) -> Answer:
    """`POST /v1/integrations/alertmanager[/KEY]`, for the integration `route` (the HTTP front
    has checked the key): Alertmanager's webhook payload, version 4.

    Every alert that can be routed is committed (and pages) whatever its neighbours are: a
    group may mix services (`group_by: [alertname]`), and one alert for a service this
    integration may not page must not keep the others from paging. The alerts that cannot be
    routed are each logged and counted (`Answer.refused`), and the answer is then the 4xx of
    the first of them, naming every one: Alertmanager logs it (with our body) and counts a
    failed notification, and does not retry a 4xx, so nothing is sent twice; it sends the group
    again at its next `group_interval`, which changes nothing of what was committed."""
    message = alertmanager.decode(body)
    if isinstance(message, Refused):
        return _refused(message)
    batch = alertmanager.events(message, route, core.config().services)
    _log_refused(route.name, batch.refused, len(message.alerts))
    reasons = tuple(unroutable.reason for unroutable in batch.refused)
    if message.truncated_alerts:
        # Never seen, so never resolved here: the sender's `max_alerts` should be 0.
        log.warning(
            "integration=%s: Alertmanager left %d alerts out of a payload (max_alerts);"
            " they cannot resolve here",
            route.name,
            message.truncated_alerts,
        )
    routed = batch.routed
    if routed:
        outcome = await _route(core, [(r.service, r.event) for r in routed], patience, route.name)
        if outcome is not None:
            if outcome.status >= 500:
                log.warning(
                    "integration=%s answered %d: %s", route.name, outcome.status, outcome.message
                )
            answer = {"status": "error", "code": outcome.result, "message": outcome.message}
            return Answer(
                outcome.status, _encode(answer), _retry(outcome.status), outcome.result, reasons
            )
    if batch.refused:
        return _unroutable(batch.refused, len(message.alerts), len(routed), reasons)
    answer = {"status": "success", "message": f"{len(routed)} alerts processed"}
    return Answer(200, _encode(answer))


MAX_LOGGED: Final = 20
"""Refused alerts of one payload logged a line each; past it, one line says how many more
(each is counted in the metrics all the same): a payload holds thousands of alerts."""

MAX_NAMED: Final = 100
"""Refused alerts of one payload named in the answer; past it, the answer says how many more."""


def _log_refused(integration: str, refused: Sequence[Unroutable], alerts: int) -> None:
    for unroutable in refused[:MAX_LOGGED]:
        log.warning(
            "alert refused integration=%s alert=%d of %d fingerprint=%r reason=%s: %s",
            integration,
            unroutable.number,
            alerts,
            unroutable.fingerprint[: alertmanager.MAX_FINGERPRINT],
            unroutable.reason,
            unroutable.refused.message,
        )
    if len(refused) > MAX_LOGGED:
        log.warning(
            "alert refused integration=%s: %d more alerts of the same payload (see"
            " pagerd_http_events_refused_total)",
            integration,
            len(refused) - MAX_LOGGED,
        )


def _unroutable(
    refused: Sequence[Unroutable], alerts: int, processed: int, reasons: tuple[str, ...]
) -> Answer:
    """The answer for a payload of `alerts` alerts some of which cannot be routed, once the
    others are committed: the status of the first refused, every reason in `errors`, and how
    many events were processed."""
    first = refused[0].refused
    errors = [unroutable.describe() for unroutable in refused[:MAX_NAMED]]
    if len(refused) > MAX_NAMED:
        errors.append(f"and {len(refused) - MAX_NAMED} more alerts refused")
    text = "; ".join(errors[:3]) + ("; ..." if len(errors) > 3 else "")
    if len(refused) < alerts:
        text += f" ({len(refused)} of {alerts} alerts refused, the others processed)"
    answer = {
        "status": "error",
        "code": first.code,
        "message": text,
        "errors": errors,
        "processed": processed,
    }
    return Answer(first.status, _encode(answer), result=first.code, refused=reasons)


def _pagerduty(status: int, message: str, errors: Sequence[str], result: str) -> Answer:
    answer = {"status": "invalid event", "message": message, "errors": list(errors)}
    return Answer(status, _encode(answer), _retry(status), result)


def new_dedup_key() -> str:
    """A dedup_key for a trigger without one: random, 32 hex digits, as PagerDuty's are."""
    return uuid.uuid4().hex


async def enqueue_events_v2(
    core: Core,
    integrations: Sequence[KeyedRoute],
    body: bytes,
    *,
    new_key: Callable[[], str] = new_dedup_key,
    patience: float = PATIENCE,
) -> Answer:
    """`POST /v2/enqueue`: an Events v2 event for the events-v2 integration whose key is its
    `routing_key`, answered as PagerDuty answers."""
    data = events_v2.decode(body)
    if isinstance(data, Refused):
        return _pagerduty(400, data.message, data.errors, "bad_request")
    key = events_v2.routing_key(data)
    if isinstance(key, Refused):
        return _pagerduty(400, key.message, key.errors, "bad_request")
    route = find_by_key(integrations, key)
    if route is None:
        answer = {"status": "unauthorized", "message": "Invalid routing key", "errors": []}
        return Answer(401, _encode(answer), result="unauthorized")
    enqueued = events_v2.events(data, route, core.config().services, new_key)
    if isinstance(enqueued, Refused):
        return _pagerduty(400, enqueued.message, enqueued.errors, "bad_request")
    # An acknowledge or resolve that names no service (None) goes to the one that has its
    # dedup_key firing, which the core knows; to none if nobody has it open.
    outcome = await _route(core, [(enqueued.service, enqueued.event)], patience, route.name)
    if outcome is not None:
        if outcome.status >= 500:
            log.warning(
                "integration=%s answered %d: %s", route.name, outcome.status, outcome.message
            )
        return _pagerduty(outcome.status, outcome.message, [outcome.message], outcome.result)
    answer = {"status": "success", "message": "Event processed", "dedup_key": enqueued.dedup_key}
    return Answer(202, _encode(answer))
