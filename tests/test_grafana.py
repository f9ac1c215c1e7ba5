"""Grafana alerting pages through pagerd: its webhook contact point's payload (version "1",
Alertmanager's shape with Grafana's own fields) fires, pages and resolves over the HTTP front
door, and the contact points docs/integrations.md shows are ones Grafana takes.

The fixtures are written field for field from Grafana's source (grafana/alerting:
receivers/webhook/v1/webhook.go `webhookMessage`, templates/template_data.go `ExtendedData` and
`ExtendedAlert`): Go's `encoding/json` of those structs, a firing alert and its resolve.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing
import yaml

from pager import alertmanager
from pager.alertmanager import GRAFANA_VERSION
from pager.domain import Alert, Resolve, Source
from pager.integrations import IntegrationRoute, Refused
from pagerd.config import load
from tests.harness import CHANNELS, ONCALL, metrics_text, settle, steps
from tests.http import front

ROOT: Final = Path(__file__).resolve().parent.parent
FIXTURES: Final = ROOT / "tests" / "fixtures"
DOCS: Final = ROOT / "docs" / "integrations.md"
KEY: Final = "grafana-key-4d1e7a9b0c"

WEBHOOK_SETTINGS: Final = frozenset(
    {
        "url", "httpMethod", "maxAlerts", "authorization_scheme", "authorization_credentials",
        "username", "password", "title", "message", "tlsConfig", "hmacConfig", "headers",
        "payload", "http_config",
    }
)  # fmt: skip
"""The settings of Grafana's webhook contact point (receivers/webhook/v1/config.go)."""
PAGERDUTY_SETTINGS: Final = frozenset(
    {
        "integrationKey", "severity", "details", "class", "component", "group", "summary",
        "source", "client", "client_url", "url",
    }
)  # fmt: skip
"""The settings of Grafana's PagerDuty contact point (receivers/pagerduty/v1/config.go)."""


def fixture(name: str) -> bytes:
    return (FIXTURES / f"grafana-webhook-{name}.json").read_bytes()


def _blocks(kind: str) -> list[str]:
    section = DOCS.read_text().split("\n## Grafana\n", 1)[1].split("\n## ", 1)[0]
    return [str(b) for b in re.findall(rf"```{kind}\n(.*?)```", section, re.DOTALL)]


def test_grafanas_payload_is_read_as_alertmanagers() -> None:
    route = IntegrationRoute("grafana-alerts", "alertmanager", service_label="service")
    source = Source("grafana-alerts", "9a3f1c7be2d04e56")
    starts_at = alertmanager.instant("2026-11-30T21:20:10Z")
    firing = alertmanager.parse(fixture("firing"), route, {"api"})
    assert isinstance(firing, alertmanager.Batch) and not firing.refused
    assert [r.service for r in firing.routed] == ["api"]
    link = "https://grafana.example.com/alerting/grafana/cf4a8b1e2d/view?orgId=1"
    assert firing.routed[0].event == Alert(
        f"Disk /var is 95% full on db-1 <{link}>", source, starts_at
    )
    resolved = alertmanager.parse(fixture("resolved"), route, {"api"})
    assert isinstance(resolved, alertmanager.Batch)
    assert resolved.routed[0].event == Resolve(source, starts_at)


def test_version_1_is_taken_only_as_grafana_sends_it() -> None:
    """Grafana's webhook is told by its `orgId`; another sender's version 1 is refused."""
    route = IntegrationRoute("g", "alertmanager", service_label="service")
    payload = json.loads(fixture("firing"))
    assert payload["version"] == GRAFANA_VERSION
    del payload["orgId"]
    refused = alertmanager.parse(json.dumps(payload).encode(), route, {"api"})
    assert isinstance(refused, Refused) and refused.status == 400
    assert "version '1' is not supported" in refused.message


def _documented_config(folder: Path) -> Any:
    """pager.toml with the docs' Grafana integration, its key in a file, and service api."""
    (toml,) = _blocks("toml")
    (folder / "keys").mkdir()
    (folder / "keys" / "grafana").write_text(KEY + "\n")
    text = CHANNELS + ONCALL + '\n[http]\nlisten = "127.0.0.1:0"\nworkers = 0\n\n'
    text += toml.replace("/etc/pager/keys/", "keys/").replace(
        '["payments-api", "checkout"]', '["api"]'
    )
    text += '\n[services.api]\npolicy = "oncall"\n'
    (folder / "pager.toml").write_text(text)
    return load(folder / "pager.toml")


async def test_grafanas_webhook_fires_pages_and_resolves_through_the_documented_config(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = _documented_config(tmp_path)
    (contact_points,) = [yaml.safe_load(b) for b in _blocks("yaml") if "type: webhook" in b]
    settings = contact_points["contactPoints"][0]["receivers"][0]["settings"]
    path = settings["url"].removeprefix("https://pager.example.com")
    headers = {"authorization": f"{settings['authorization_scheme']} {KEY}"}
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            response = await client.post(path, content=fixture("firing"), headers=headers)
            assert response.status_code == 200, response.text
            await settle()
            incident = daemon.services.state("api").incident
            assert incident is not None and incident.message.startswith("Disk /var is 95% full")
            assert len(steps(config)) == 2  # level 1 of the harness policy: two targets
            response = await client.post(path, content=fixture("resolved"), headers=headers)
            assert response.status_code == 200, response.text
            assert daemon.services.state("api").healthy
            # A firing of an earlier episode, delivered late (an HA peer's retry): it started
            # before the one the alert resolved with, so it is stale and pages nobody.
            earlier = json.loads(fixture("firing"))
            earlier["alerts"][0]["startsAt"] = "2026-11-30T21:05:00Z"
            response = await client.post(path, json=earlier, headers=headers)
            assert response.status_code == 200
            await settle()
            assert daemon.services.state("api").last_incident == 1 and len(steps(config)) == 2
            text = await metrics_text(config.socket)
            assert 'pagerd_stale_firings_total{integration="grafana-alerts"} 1' in text
            # Grafana's firing delivered again after its resolve (the same startsAt): it may be
            # a late copy, or the alert back; pagerd cannot tell, so it pages, a new incident.
            response = await client.post(path, content=fixture("firing"), headers=headers)
            assert response.status_code == 200
            await settle()
            assert daemon.services.state("api").last_incident == 2 and len(steps(config)) == 4


def test_the_documented_contact_points_are_grafanas() -> None:
    """Each YAML block is a provisioning file of contact points, with only settings Grafana's
    source has, pointed at pagerd's routes, its secret from the environment."""
    blocks = [yaml.safe_load(b) for b in _blocks("yaml")]
    assert len(blocks) == 2
    kinds = {}
    for block in blocks:
        assert block["apiVersion"] == 1
        (point,) = block["contactPoints"]
        assert point["orgId"] == 1 and point["name"]
        (receiver,) = point["receivers"]
        assert receiver["uid"] and receiver.get("disableResolveMessage", False) is False
        kinds[receiver["type"]] = receiver["settings"]
    webhook, pagerduty = kinds["webhook"], kinds["pagerduty"]
    assert set(webhook) <= WEBHOOK_SETTINGS and set(pagerduty) <= PAGERDUTY_SETTINGS
    assert webhook["url"].endswith("/v1/integrations/alertmanager")
    assert webhook["authorization_scheme"] == "Bearer" and webhook["httpMethod"] == "POST"
    assert webhook["authorization_credentials"] == "${PAGERD_KEY}"
    assert webhook["maxAlerts"] == 0 and "payload" not in webhook
    assert pagerduty["url"].endswith("/v2/enqueue")
    assert pagerduty["integrationKey"] == "${PAGERD_ROUTING_KEY}"
    assert pagerduty["severity"] in ("critical", "error", "warning", "info")
