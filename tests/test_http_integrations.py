"""The integrations' routes over real TCP with httpx, under MockClock: Alertmanager's webhook
(Bearer and the key in the path, its Watchdog as a heartbeat), Events v2 (the key in the body)
and heartbeats; keys, rate limits and refusals as each sender needs them."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import trio
import trio.testing

from pagerd.config import Config, ConfigError, load
from tests.harness import CHANNELS, ONCALL, metrics_text, notifications, settle, steps
from tests.http import CRON, INTEGRATIONS, KEYS, front, keyed_config

AMTOOL_MISSING: Final = (
    "AMTOOL (prometheus-alertmanager) IS NOT INSTALLED: the documented Alertmanager config was"
    " NOT checked. Install it with scripts/install-test-tools."
)
HOOK_KEYS = {
    "pd": "pd-routing-key-7b1e0c",
    "hb": "hb-key-2d9f64a1c0ffee",
    "dog": "dog-key-0a3b5e7f9d2c",
}
MORE = """
[integrations.pd]
type = "events-v2"
key_file = "pd.key"
service_label = "source"

[integrations.hb]
type = "heartbeat"
key_file = "hb.key"
services = ["cron", "api"]

[integrations.dog]
type = "alertmanager"
key_file = "dog.key"
service = "cron"
heartbeat_alert = "Watchdog"
"""


def hooks_config(folder: Path, *, rate: str = "100/s", burst: int = 100) -> Config:
    """Services api, web (no heartbeat) and cron (heartbeat 5m), with the integrations of
    tests/http.py and an events-v2, a heartbeat and a Watchdog alertmanager one."""
    http = INTEGRATIONS.replace('rate_limit = "100/s"', f'rate_limit = "{rate}"')
    http = http.replace("burst = 100", f"burst = {burst}") + MORE
    return keyed_config(folder, {**KEYS, **HOOK_KEYS}, http, CRON)


def webhook(*alerts: tuple[str, str, str], status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4): alerts as (fingerprint, alertname, status)."""
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "pagerd",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": s,
                "labels": {"alertname": name, "service": "api"},
                "annotations": {"summary": f"{name} is up"},
                "startsAt": "2027-01-15T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fp,
            }
            for fp, name, s in alerts
        ],
    }


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {({**KEYS, **HOOK_KEYS})[name]}"}


def pages(config: Config) -> list[str]:
    return sorted({incident for incident, _, _, _ in steps(config)})


async def test_alertmanager_with_bearer_or_the_key_in_the_path_fires_and_resolves(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = hooks_config(tmp_path)
    am = "/v1/integrations/alertmanager"
    with trio.fail_after(60):
        async with front(config) as (_, client):
            fire = webhook(("a1", "HighLatency", "firing"), ("a2", "Errors", "firing"))
            response = await client.post(am, json=fire, headers=bearer("am"))
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "success"
            # The same group again, by the path form: a resend pages nobody again.
            response = await client.post(f"{am}/{KEYS['am']}", json=fire)
            assert response.status_code == 200
            await settle()
            assert pages(config) == ["api#1"]
            one = webhook(("a1", "HighLatency", "resolved"), ("a2", "Errors", "firing"))
            assert (await client.post(f"{am}/{KEYS['am']}", json=one)).status_code == 200
            status = (await client.get("/status/api", headers=bearer("ops"))).json()
            assert status["incident"]["id"] == "api#1"
            last = webhook(("a2", "Errors", "resolved"), status="resolved")
            assert (await client.post(am, json=last, headers=bearer("am"))).status_code == 200
            status = (await client.get("/status/api", headers=bearer("ops"))).json()
            assert status["state"] == "healthy"
            history = (await client.get("/history/api", headers=bearer("ops"))).json()
            events = [(e["event"], e.get("integration")) for e in history["timeline"]]
            assert ("alert", "am") in events and ("resolve", "am") in events
            # A wrong key: 401 with Bearer, 404 in the path (as for no such path); counted.
            assert (await client.post(am, json=fire, headers=bearer("ops"))).status_code == 401
            assert (await client.post(f"{am}/wrong", json=fire)).status_code == 404
            text = await metrics_text(config.socket)
            assert 'pagerd_http_auth_failures_total{integration_type="alertmanager"} 2' in text
            assert KEYS["am"] not in text


async def test_alertmanager_over_its_rate_gets_503_with_retry_after_not_429(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Alertmanager drops a 4xx (429 too): only a 5xx is retried."""
    config = hooks_config(tmp_path, rate="1/s", burst=1)
    am = f"/v1/integrations/alertmanager/{KEYS['am']}"
    with trio.fail_after(60):
        async with front(config) as (_, client):
            fire = webhook(("a1", "HighLatency", "firing"))
            assert (await client.post(am, json=fire)).status_code == 200
            limited = await client.post(am, json=webhook(("a2", "Other", "firing")))
            assert limited.status_code == 503
            assert limited.headers["retry-after"] == "1"
            await trio.sleep(1)
            assert (
                await client.post(am, json=webhook(("a2", "Other", "firing")))
            ).status_code == 200
            history = (await client.get("/history/api", headers=bearer("ops"))).json()
            assert [e["event"] for e in history["timeline"]].count("alert") == 2


async def test_events_v2_trigger_acknowledge_resolve_with_the_key_in_the_body(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = hooks_config(tmp_path)
    key = HOOK_KEYS["pd"]
    trigger = {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": "disk-1",
        "payload": {"summary": "disk full", "source": "api", "severity": "critical"},
    }
    with trio.fail_after(60):
        async with front(config) as (_, client):
            response = await client.post("/v2/enqueue", json=trigger)
            assert response.status_code == 202, response.text
            assert response.json() == {
                "status": "success",
                "message": "Event processed",
                "dedup_key": "disk-1",
            }
            await settle()
            assert pages(config) == ["api#1"]
            ack = {"routing_key": key, "event_action": "acknowledge", "dedup_key": "disk-1"}
            assert (await client.post("/v2/enqueue", json=ack)).status_code == 202
            status = (await client.get("/status/api", headers=bearer("ops"))).json()
            assert status["incident"]["acknowledged_by"] == "pd"
            resolve = {**ack, "event_action": "resolve"}
            assert (await client.post("/v2/enqueue", json=resolve)).status_code == 202
            status = (await client.get("/status/api", headers=bearer("ops"))).json()
            assert status["state"] == "healthy"
            history = (await client.get("/history/api", headers=bearer("ops"))).json()
            assert {e.get("integration") for e in history["timeline"] if "event" in e} >= {"pd"}
            # A wrong routing_key: PagerDuty's 401, counted, nothing recorded.
            wrong = await client.post("/v2/enqueue", json={**trigger, "routing_key": "x" * 32})
            assert wrong.status_code == 401
            assert wrong.json()["message"] == "Invalid routing key"
            # The key of another type is no routing_key.
            other = await client.post("/v2/enqueue", json={**trigger, "routing_key": KEYS["am"]})
            assert other.status_code == 401
            text = await metrics_text(config.socket)
            assert 'pagerd_http_auth_failures_total{integration_type="events-v2"} 2' in text
            assert key not in text
    assert pages(config) == ["api#1"]


async def test_events_v2_over_its_rate_gets_429_as_at_pagerduty(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = hooks_config(tmp_path, rate="1/s", burst=1)
    trigger = {
        "routing_key": HOOK_KEYS["pd"],
        "event_action": "trigger",
        "payload": {"summary": "disk full", "source": "api", "severity": "critical"},
    }
    with trio.fail_after(60):
        async with front(config) as (_, client):
            assert (await client.post("/v2/enqueue", json=trigger)).status_code == 202
            limited = await client.post("/v2/enqueue", json=trigger)
            assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
            # A wrong key is no integration's: 401, and takes nobody's tokens.
            wrong = {**trigger, "routing_key": "nobody"}
            assert (await client.post("/v2/enqueue", json=wrong)).status_code == 401
            await trio.sleep(1)
            assert (await client.post("/v2/enqueue", json=trigger)).status_code == 202


async def test_heartbeats_over_http_check_in_and_refuse_what_they_cannot_take(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = hooks_config(tmp_path)
    with trio.fail_after(3600):
        async with front(config) as (_, client):
            response = await client.post("/heartbeat/cron", headers=bearer("hb"))
            assert response.status_code == 200, response.text
            assert response.json()["heartbeat"]["every"] == "5m"
            for path, headers, status, code in (
                ("/heartbeat/nope", bearer("hb"), 404, "unknown_service"),
                ("/heartbeat/api", bearer("hb"), 400, "bad_request"),  # no heartbeat
                ("/heartbeat/web", bearer("hb"), 403, "forbidden"),  # not in its services
                ("/heartbeat/cron", bearer("ops"), 401, "unauthorized"),  # a rest key
                ("/heartbeat/cron", {}, 401, "unauthorized"),
                ("/heartbeat/bad%20name", bearer("hb"), 400, "bad_request"),
            ):
                answer = await client.post(path, headers=headers)
                assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), path
            # Silent past the interval: the miss pages; the next check-in closes it.
            await trio.sleep(5 * 60 + 1)
            await settle()
            assert pages(config) == ["cron#1"]
            assert (await client.post("/heartbeat/cron", headers=bearer("hb"))).status_code == 200
            status = (await client.get("/status/cron", headers=bearer("ops"))).json()
            assert status["state"] == "healthy"
            history = (await client.get("/history/cron", headers=bearer("ops"))).json()
            restored = [e for e in history["timeline"] if e.get("event") == "heartbeat"]
            assert restored[0]["by"] == "hb" and restored[0]["integration"] == "hb"


async def test_alertmanager_s_watchdog_is_a_heartbeat_never_an_alert(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = hooks_config(tmp_path)
    am = f"/v1/integrations/alertmanager/{HOOK_KEYS['dog']}"
    with trio.fail_after(3600):
        async with front(config) as (_, client):
            # Alertmanager repeats the firing Watchdog every repeat_interval (4 minutes here).
            for _ in range(3):
                assert (await client.post(am, json=webhook(("w", "Watchdog", "firing")))).is_success
                await trio.sleep(4 * 60)
            await settle()
            assert notifications(config) == []
            status = (await client.get("/status/cron", headers=bearer("ops"))).json()
            assert status["state"] == "healthy" and status["heartbeat"]["every"] == "5m"
            # Its resolve is no check-in and changes nothing; then the silence pages.
            resolved = webhook(("w", "Watchdog", "resolved"), status="resolved")
            assert (await client.post(am, json=resolved)).status_code == 200
            await trio.sleep(60 + 1)
            await settle()
            assert pages(config) == ["cron#1"]
            # Watchdog firing again: the check-in closes the incident the miss opened.
            assert (await client.post(am, json=webhook(("w", "Watchdog", "firing")))).is_success
            status = (await client.get("/status/cron", headers=bearer("ops"))).json()
            assert status["state"] == "healthy"
            # Any other alert of the same integration is an alert of the service.
            fire = webhook(("x", "CronFailed", "firing"))
            assert (await client.post(am, json=fire)).is_success
            await settle()
            assert pages(config) == ["cron#1", "cron#2"]


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ('type = "events-v2"\nservice = "cron"\nheartbeat_alert = "W"', "'alertmanager' only"),
        ('type = "alertmanager"\nservice_label = "s"\nheartbeat_alert = "W"', "needs service"),
        ('type = "alertmanager"\nservice = "api"\nheartbeat_alert = "W"', "no heartbeat"),
        ('type = "alertmanager"\nservice = "cron"\nheartbeat_alert = ""', "must not be empty"),
        ('type = "alertmanager"\nservice = "gone"', "no service named 'gone'"),
        ('type = "heartbeat"\nservices = ["cron", "gone"]', "services[1]: no service named"),
    ],
)
def test_check_refuses_integrations_naming_what_is_not_configured(
    tmp_path: Path, setting: str, error: str
) -> None:
    config = hooks_config(tmp_path)
    (tmp_path / "x.key").write_text("x-key-1")
    text = config.path.read_text() + f'\n[integrations.x]\nkey_file = "x.key"\n{setting}\n'
    config.path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load(config.path)
    report = raised.value.report()
    assert error in report, report
    assert "integrations.x." in report and "x-key-1" not in report


DOCS: Final = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


def _watchdog_block(kind: str) -> str:
    blocks = re.findall(rf"```{kind}\n(.*?)```", DOCS.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if "Watchdog" in b]
    return str(block)


def test_the_documented_watchdog_config_is_one_pagerd_takes(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "prometheus-watchdog").write_text("dog-doc-key-5e0c1a2b\n")
    text = CHANNELS + ONCALL.replace("oncall", "platform")
    text += _watchdog_block("toml").replace("/etc/pager/keys/", "keys/")
    (tmp_path / "pager.toml").write_text(text)
    config = load(tmp_path / "pager.toml")
    integration = config.integrations["prometheus-watchdog"]
    assert integration.route().heartbeat_alert == "Watchdog"
    assert config.heartbeats["monitoring"] == 600


@pytest.mark.skipif(shutil.which("amtool") is None, reason=AMTOOL_MISSING)
def test_the_documented_alertmanager_watchdog_route_is_one_alertmanager_takes(
    tmp_path: Path,
) -> None:
    (tmp_path / "alertmanager.yml").write_text(_watchdog_block("yaml"))
    done = subprocess.run(
        ["amtool", "check-config", str(tmp_path / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _amtool_version() -> tuple[int, ...]:
    shown = subprocess.run(
        ["amtool", "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    found = re.search(r"version (\d+)\.(\d+)", shown.stdout + shown.stderr)
    assert found is not None, shown
    return (int(found.group(1)), int(found.group(2)))


def _alertmanager_configs() -> list[str]:
    """The Alertmanager config files docs/integrations.md shows (Grafana's are not)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    return [str(b) for b in blocks if b.startswith("route:")]


@pytest.mark.skipif(shutil.which("amtool") is None, reason=AMTOOL_MISSING)
def test_every_documented_alertmanager_config_is_one_alertmanager_takes(tmp_path: Path) -> None:
    """Every block as the version installed takes it; `url_file` (0.26 and later) is refused by
    0.25's, as the docs say."""
    blocks = _alertmanager_configs()
    assert len(blocks) == 5 and sum("url_file" in b for b in blocks) == 1
    version = _amtool_version()
    for number, block in enumerate(blocks):
        path = tmp_path / f"alertmanager-{number}.yml"
        path.write_text(block)
        done = subprocess.run(
            ["amtool", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if "url_file" in block and version < (0, 26):
            assert done.returncode != 0 and "field url_file not found" in done.stdout + done.stderr
        else:
            assert done.returncode == 0, block + done.stdout + done.stderr
        assert "pager.example.com" in block


async def test_no_key_of_these_routes_is_in_logs_metrics_answers_or_history(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = hooks_config(tmp_path)
    seen: list[str] = []
    elsewhere = webhook(("a", "X", "firing"), ("n", "X", "firing"))
    elsewhere["alerts"][1]["labels"]["service"] = "nope"
    with trio.fail_after(60):
        async with front(config) as (_, client):
            am = "/v1/integrations/alertmanager"
            for path, body, headers in (
                (f"{am}/{KEYS['am']}", webhook(("a", "X", "firing")), {}),
                (f"{am}/{KEYS['am']}x", webhook(("a", "X", "firing")), {}),
                (am, {"version": "4"}, bearer("am")),
                ("/v2/enqueue", {"routing_key": HOOK_KEYS["pd"], "event_action": "x"}, {}),
                ("/v2/enqueue", {"routing_key": HOOK_KEYS["pd"] + "x", "event_action": "x"}, {}),
                ("/heartbeat/cron", None, bearer("hb")),
                ("/heartbeat/nope", None, bearer("hb")),
                (f"{am}/{HOOK_KEYS['dog']}", webhook(("w", "Watchdog", "firing")), {}),
                (f"{am}/{KEYS['am']}", elsewhere, {}),  # one alert refused, logged
            ):
                response = await client.post(path, json=body, headers=headers)
                seen.append(response.text)
            seen.append(await metrics_text(config.socket))
            for service in ("api", "cron"):
                seen.append((await client.get(f"/history/{service}", headers=bearer("ops"))).text)
    # The server's logs (httpx, the client here, logs the URLs it was given).
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("pagerd") for r in ours)
    seen += [r.getMessage() for r in ours]
    text = "\n".join(seen)
    assert "alert refused integration=am alert=2 of 2 fingerprint='n'" in text
    assert 'pagerd_http_events_refused_total{integration="am",reason="unknown_service"} 1' in text
    for key in (KEYS["am"], *HOOK_KEYS.values()):
        assert key not in text
