"""The integrations' parsers: any body gives a refusal or valid events, never an exception, and
the payloads real senders send are read as they mean them (the fixtures were captured from the
real Alertmanager and the real `pagerduty` client: see tests/test_real_senders.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pager import alertmanager, events_v2
from pager.domain import Ack, Alert, Heartbeat, Resolve, Source, is_service_name
from pager.integrations import IntegrationRoute, Refused, Routed

FIXTURES: Final = Path(__file__).parent / "fixtures"
KNOWN: Final = frozenset({"api", "web", "db"})
AM = IntegrationRoute("prom", "alertmanager", service_label="service")
PD = IntegrationRoute("pd", "events-v2", service_label="source")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
label_values = st.sampled_from(["api", "web", "nope", "", "bad name!"])
alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved", "other"]),
        "fingerprint": st.text(max_size=20),
        "labels": st.dictionaries(st.sampled_from(["service", "alertname"]), label_values),
        "annotations": st.dictionaries(st.sampled_from(["summary", "description"]), st.text()),
        "generatorURL": st.text(max_size=10),
    }
)
payloads = st.fixed_dictionaries(
    {"version": st.sampled_from(["4", "3", 4]), "alerts": st.lists(alerts, max_size=5)}
) | st.dictionaries(st.text(max_size=10), json_values)
v2_bodies = st.fixed_dictionaries(
    {
        "routing_key": st.just("k"),
        "event_action": st.sampled_from(["trigger", "acknowledge", "resolve", "bogus", 3]),
    },
    optional={
        "dedup_key": st.text(max_size=5) | st.integers(),
        "payload": st.fixed_dictionaries(
            {},
            optional={
                "summary": st.text(max_size=10),
                "source": label_values,
                "severity": st.sampled_from([*events_v2.SEVERITIES, "bad"]),
                "timestamp": st.sampled_from(["2026-11-30T21:00:00Z", "not a time"]),
                "component": json_values,
                "custom_details": json_values,
            },
        )
        | json_values,
        "links": json_values,
        "images": json_values,
    },
) | st.dictionaries(st.text(max_size=10), json_values)


def valid_routed(routed: list[Routed], route: IntegrationRoute) -> None:
    for r in routed:
        assert r.service in KNOWN and is_service_name(r.service)
        assert isinstance(r.event, Alert | Resolve)
        source = r.event.source
        assert source is not None and source.integration == route.name and source.key


@settings(max_examples=300)
@given(payloads)
def test_any_json_is_refused_or_read_into_valid_events_alertmanager(data: Any) -> None:
    result = alertmanager.parse(json.dumps(data).encode(), AM, KNOWN)
    if isinstance(result, Refused):
        assert 400 <= result.status < 500 and result.message
        return
    valid_routed(result.routed, AM)
    # Every alert is routed or refused, never lost, and each refused one is named with why.
    assert len(result.routed) + len(result.refused) == len(data["alerts"])
    numbers = [u.number for u in result.refused]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= len(data["alerts"]) for n in numbers)
    for unroutable in result.refused:
        assert unroutable.reason in alertmanager.REASONS
        assert 400 <= unroutable.refused.status < 500
        assert unroutable.describe().startswith(f"alert {unroutable.number}: ")
    # What is routed is what the routable alerts alone give: a neighbour changes nothing.
    kept = [a for n, a in enumerate(data["alerts"], 1) if n not in numbers]
    alone = alertmanager.parse(json.dumps({**data, "alerts": kept}).encode(), AM, KNOWN)
    assert alone == alertmanager.Batch(result.routed)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_or_read_alertmanager(body: bytes) -> None:
    result = alertmanager.parse(body, AM, KNOWN)
    assert isinstance(result, Refused | alertmanager.Batch)


@settings(max_examples=300)
@given(v2_bodies, st.binary(max_size=100))
def test_any_json_is_refused_or_read_into_a_valid_event_events_v2(data: Any, raw: bytes) -> None:
    for body in (json.dumps(data).encode(), raw):
        result = events_v2.parse(body, PD, KNOWN, lambda: "generated")
        if isinstance(result, Refused):
            assert result.status == 400 and result.code == "invalid event" and result.errors
            continue
        assert result.service is None or result.service in KNOWN
        assert result.dedup_key and len(result.dedup_key) <= events_v2.MAX_DEDUP_KEY
        if isinstance(result.event, Alert):
            assert result.service is not None
            assert result.event.source == Source("pd", result.dedup_key)


def test_too_deep_json_is_refused() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert isinstance(alertmanager.parse(deep, AM, KNOWN), Refused)
    assert isinstance(events_v2.parse(deep, PD, KNOWN, lambda: "k"), Refused)


def webhook(*alerts: dict[str, Any]) -> bytes:
    return json.dumps({"version": "4", "groupKey": "{}:{}", "alerts": list(alerts)}).encode()


def am_alert(fp: str, status: str = "firing", **annotations: str) -> dict[str, Any]:
    return {
        "status": status,
        "fingerprint": fp,
        "labels": {"alertname": "DiskFull", "service": "api"},
        "annotations": annotations,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }


def test_the_message_is_summary_else_description_else_alertname_with_the_link() -> None:
    link = " <http://prometheus:9090/graph?g0.expr=up>"
    cases = [
        ({"summary": "S", "description": "D"}, "S"),
        ({"description": "D"}, "D"),
        ({}, "DiskFull"),
    ]
    for annotated, text in cases:
        routed = alertmanager.parse(webhook(am_alert("f", **annotated)), AM, KNOWN)
        assert routed == alertmanager.Batch(
            [Routed("api", Alert(text + link, Source("prom", "f")))]
        )


def test_resolved_alerts_resolve_their_fingerprint() -> None:
    routed = alertmanager.parse(webhook(am_alert("f1"), am_alert("f2", "resolved")), AM, KNOWN)
    assert isinstance(routed, alertmanager.Batch)
    assert [r.event for r in routed.routed][1] == Resolve(Source("prom", "f2"))


ALLOWED = IntegrationRoute(
    "prom", "alertmanager", service_label="service", services=frozenset({"api"})
)


@pytest.mark.parametrize(
    ("alert", "route", "status", "says", "reason"),
    [
        ({"labels": {"service": "nope"}}, AM, 404, "unknown service 'nope'", "unknown_service"),
        ({"labels": {}}, AM, 400, "no label 'service'", "no_service_label"),
        ({"labels": {"service": "web"}}, ALLOWED, 403, "not among", "not_in_services"),
        ({"fingerprint": ""}, AM, 400, "fingerprint must be", "bad_fingerprint"),
        ({"fingerprint": "f" * 257}, AM, 400, "fingerprint must be", "bad_fingerprint"),
    ],
)  # fmt: skip
def test_an_alert_that_cannot_be_routed_refuses_itself_and_not_its_neighbours(
    alert: dict[str, Any], route: IntegrationRoute, status: int, says: str, reason: str
) -> None:
    bad = am_alert("f2") | alert
    read = alertmanager.parse(
        webhook(am_alert("f1"), bad, am_alert("f3", "resolved")), route, KNOWN
    )
    assert isinstance(read, alertmanager.Batch)
    assert [r.event for r in read.routed] == [
        Alert("DiskFull <http://prometheus:9090/graph?g0.expr=up>", Source("prom", "f1")),
        Resolve(Source("prom", "f3")),
    ]
    (refused,) = read.refused
    assert refused.number == 2 and refused.reason == reason
    assert refused.refused.status == status and says in refused.refused.message
    assert refused.describe().startswith("alert 2: ")


def test_a_long_label_value_is_quoted_cut_in_the_refusal() -> None:
    long = "x" * 100_000
    read = alertmanager.parse(webhook(am_alert("f1") | {"labels": {"service": long}}), AM, KNOWN)
    assert isinstance(read, alertmanager.Batch)
    (refused,) = read.refused
    assert len(refused.refused.message) < 200 and "unknown service 'xxx" in refused.refused.message


def test_a_fixed_service_takes_every_alert() -> None:
    route = IntegrationRoute("prom", "alertmanager", service="db")
    routed = alertmanager.parse(webhook(am_alert("f1") | {"labels": {}}), route, KNOWN)
    assert isinstance(routed, alertmanager.Batch) and routed.routed[0].service == "db"


def test_another_version_is_refused() -> None:
    body = json.dumps({"version": "5", "alerts": []}).encode()
    refused = alertmanager.parse(body, AM, KNOWN)
    assert isinstance(refused, Refused) and "version '5'" in refused.message


def v2(action: str, **fields: Any) -> bytes:
    return json.dumps({"routing_key": "k", "event_action": action, **fields}).encode()


TRIGGER = {"summary": "disk full", "source": "api", "severity": "critical"}


def test_a_trigger_without_dedup_key_gets_one() -> None:
    got = events_v2.parse(v2("trigger", payload=TRIGGER), PD, KNOWN, lambda: "made")
    assert got == events_v2.Enqueued("api", Alert("disk full", Source("pd", "made")), "made")


def test_resolve_and_acknowledge_need_a_dedup_key_not_a_payload() -> None:
    got = events_v2.parse(v2("resolve", dedup_key="d"), PD, KNOWN, lambda: "x")
    assert got == events_v2.Enqueued(None, Resolve(Source("pd", "d")), "d")
    got = events_v2.parse(v2("acknowledge", dedup_key="d"), PD, KNOWN, lambda: "x")
    assert got == events_v2.Enqueued(None, Ack("pd", Source("pd", "d")), "d")
    refused = events_v2.parse(v2("resolve"), PD, KNOWN, lambda: "x")
    assert isinstance(refused, Refused) and refused.errors == ("'dedup_key' is missing or blank",)


def test_a_bad_event_gets_every_error_in_pagerdutys_words() -> None:
    body = v2("trigger", dedup_key="x" * 300, payload={"severity": "fatal"})
    refused = events_v2.parse(body, PD, KNOWN, lambda: "x")
    assert isinstance(refused, Refused)
    assert (refused.status, refused.message) == (400, "Event object is invalid")
    assert refused.errors == (
        "Length of 'dedup_key' is incorrect (should be at most 255 characters)",
        "'payload.summary' is missing or blank",
        "'payload.source' is missing or blank",
        "'payload.severity' is invalid (must be one of critical, error, warning, info)",
    )


@pytest.mark.parametrize(
    ("label", "payload"),
    [
        ("component", {"component": "web"}),
        ("group", {"group": "web"}),
        ("team", {"custom_details": {"team": "web"}}),
    ],
)
def test_the_service_field_is_chosen_by_the_config(label: str, payload: dict[str, Any]) -> None:
    route = IntegrationRoute("pd", "events-v2", service_label=label)
    got = events_v2.parse(v2("trigger", payload=TRIGGER | payload), route, KNOWN, lambda: "k")
    assert isinstance(got, events_v2.Enqueued) and got.service == "web"


def test_an_unknown_service_is_refused_with_the_reason() -> None:
    refused = events_v2.parse(
        v2("trigger", payload=TRIGGER | {"source": "nope"}), PD, KNOWN, lambda: "k"
    )
    assert isinstance(refused, Refused) and refused.errors == ("unknown service 'nope'",)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_the_payload_real_alertmanager_sent_is_read() -> None:
    body = fixture("alertmanager-webhook-v4.json")
    routed = alertmanager.parse(body, AM, KNOWN)
    assert isinstance(routed, alertmanager.Batch) and routed.routed and not routed.refused
    valid_routed(routed.routed, AM)


@pytest.mark.parametrize("action", ["trigger", "acknowledge", "resolve"])
def test_the_bodies_the_pagerduty_client_sent_are_read(action: str) -> None:
    body = fixture(f"pagerduty-events-v2-{action}.json")
    got = events_v2.parse(body, PD, KNOWN, lambda: "made")
    assert isinstance(got, events_v2.Enqueued), got
    assert got.dedup_key == "disk-full-api"


def test_firing_alerts_come_before_resolved_ones_whatever_the_payload_order() -> None:
    # As the real Alertmanager sent it (tests/fixtures): one resolved, then one newly firing.
    routed = alertmanager.parse(webhook(am_alert("f1", "resolved"), am_alert("f2")), AM, KNOWN)
    assert isinstance(routed, alertmanager.Batch)
    assert [type(r.event) for r in routed.routed] == [Alert, Resolve]


def test_an_acknowledge_or_resolve_goes_by_its_dedup_key_not_its_payload() -> None:
    # Alertmanager's own pagerduty_configs sends its trigger's payload again with a resolve.
    body = v2("resolve", dedup_key="d", payload={"summary": "x", "source": "Alertmanager"})
    got = events_v2.parse(body, PD, KNOWN, lambda: "x")
    assert got == events_v2.Enqueued(None, Resolve(Source("pd", "d")), "d")
    fixed = IntegrationRoute("pd", "events-v2", service="web")
    got = events_v2.parse(body, fixed, KNOWN, lambda: "x")
    assert got == events_v2.Enqueued("web", Resolve(Source("pd", "d")), "d")


@pytest.mark.parametrize("action", ["trigger", "resolve"])
def test_the_bodies_alertmanagers_pagerduty_sender_sent_are_read(action: str) -> None:
    body = fixture(f"alertmanager-pagerduty-{action}.json")
    route = IntegrationRoute("am-pd", "events-v2", service="api")
    got = events_v2.parse(body, route, KNOWN, lambda: "made")
    assert isinstance(got, events_v2.Enqueued), got
    assert got.service == "api" and len(got.dedup_key) == 64  # the group key's SHA-256
    assert isinstance(got.event, Alert if action == "trigger" else Resolve)


DOG = IntegrationRoute("prom", "alertmanager", service="api", heartbeat_alert="Watchdog")
PLAIN = IntegrationRoute("prom", "alertmanager", service="api")
dog_alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "fingerprint": st.text(min_size=1, max_size=4),
        "labels": st.fixed_dictionaries(
            {"alertname": st.sampled_from(["Watchdog", "watchdog", "Other", ""])}
        ),
    }
)


@settings(max_examples=300)
@given(st.lists(dog_alerts, max_size=6))
def test_the_watchdog_is_a_check_in_when_firing_nothing_when_resolved_and_no_alert(
    alerts: list[dict[str, Any]],
) -> None:
    def parse(route: IntegrationRoute, chosen: list[dict[str, Any]]) -> list[Routed]:
        result = alertmanager.parse(
            json.dumps({"version": "4", "alerts": chosen}).encode(), route, KNOWN
        )
        assert isinstance(result, alertmanager.Batch) and not result.refused
        return result.routed

    def watchdog(alert: dict[str, Any]) -> bool:
        return bool(alert["labels"]["alertname"] == "Watchdog")

    routed = parse(DOG, alerts)
    check_ins = [r for r in routed if isinstance(r.event, Heartbeat)]
    firing = [a for a in alerts if watchdog(a) and a["status"] == "firing"]
    assert check_ins == [Routed("api", Heartbeat(by="prom"))] * len(firing)
    others = [r for r in routed if not isinstance(r.event, Heartbeat)]
    assert others == parse(PLAIN, [a for a in alerts if not watchdog(a)])
