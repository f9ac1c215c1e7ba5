"""End to end through pagerd's real HTTP listener, with real senders nobody here wrote:

- the real Alertmanager (tests/alertmanager.py), its `webhook_configs` receiver pointed at
  pagerd (the key in the path, or Bearer through `http_config.authorization`): alerts posted to
  its `/api/v2/alerts` fire and page, its resends page nobody again, one resolved of two closes
  nothing, the last closes;
- PagerDuty's own Events v2 client (`pagerduty`) over TLS with the test CA: trigger, acknowledge
  (by the integration), resolve, each answered as PagerDuty answers;
- Alertmanager's own `pagerduty_configs`, its `url` set to pagerd: a second real Events v2 sender.

The daemon runs in-process on the real clock (the senders are real processes and threads), its
HTTP served by two front processes (`http.workers`), as in production; notifications go to the
log transport. Every wait polls with a deadline (`fail_after`), never a
fixed sleep. The Alertmanager tests skip, loudly, only where its binary is missing.
"""

from __future__ import annotations

import re
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any, Final

import pagerduty
import pytest
import trio
import trustme

from pagerd.config import Config
from tests import alertmanager as real_alertmanager
from tests.harness import connect, metrics_text, running, steps, until
from tests.http import CRON, base_url, keyed_config
from tests.real_senders import events_client

KEYS: Final = {
    "am": "am-e2e-key-61c9d0",
    "pd": "pd-e2e-routing-key-0b7e3a",
    "ampd": "ampd-e2e-4f1c2d3e4f5a",
    "dog": "dog-e2e-key-93ac",
    "amapi": "amapi-e2e-key-2f8d6b",
}
INTEGRATIONS: Final = """
[http]
listen = "127.0.0.1:0"
workers = 2

[integrations.prometheus]
type = "alertmanager"
key_file = "am.key"
service_label = "service"

[integrations.pd]
type = "events-v2"
key_file = "pd.key"
service_label = "source"

[integrations.am-pd]
type = "events-v2"
key_file = "ampd.key"
service = "web"

[integrations.watchdog]
type = "alertmanager"
key_file = "dog.key"
service = "cron"
heartbeat_alert = "Watchdog"

[integrations.prometheus-api]
type = "alertmanager"
key_file = "amapi.key"
service_label = "service"
services = ["api"]
"""


DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


def e2e_config(folder: Path, http: str = "") -> Config:
    return keyed_config(folder, KEYS, INTEGRATIONS.replace("[http]\n", "[http]\n" + http), CRON)


async def answered(config: Config, route: str, code: str = "200") -> int:
    """How many requests to `route` pagerd has answered with `code` (its metrics)."""
    text = await metrics_text(config.socket)
    pattern = rf'pagerd_http_requests_total\{{route="{re.escape(route)}",code="{code}"\}} (\S+)'
    found = re.search(pattern, text)
    return 0 if found is None else int(float(found.group(1)))


async def until_answered(config: Config, route: str, count: int) -> None:
    with trio.fail_after(20):
        while True:
            if await answered(config, route) >= count:
                return
            await trio.sleep(0.05)


async def timeline(config: Config, service: str) -> list[tuple[str, str | None]]:
    """(event, integration) of each entry of the service's latest incident's history."""
    async with connect(config.socket) as conn:
        history = await conn.request("history", service=service)
    return [(e["event"], e.get("integration")) for e in history["timeline"]]


@real_alertmanager.needed
@pytest.mark.parametrize("how", ["path", "bearer"])
async def test_alertmanager_fires_resends_resolves_and_closes_through_pagerd(
    tmp_path: Path, how: str
) -> None:
    config = e2e_config(tmp_path)
    route = "/v1/integrations/alertmanager" + ("/{key}" if how == "path" else "")
    with trio.fail_after(120):
        async with running(config, offload=None) as daemon:
            url = f"{base_url(daemon)}/v1/integrations/alertmanager"
            if how == "path":
                url += f"/{KEYS['am']}"
            bearer = KEYS["am"] if how == "bearer" else None
            async with real_alertmanager.running(
                tmp_path / "am", url, repeat_interval="1s", bearer=bearer
            ) as am:
                services = daemon.services
                same = {"summary": "Disk /var is 95% full"}
                db1 = {"alertname": "DiskFull", "service": "api", "instance": "db-1"}
                db2 = {"alertname": "DiskFull", "service": "api", "instance": "db-2"}
                await am.post_many([(db1, same, False), (db2, same, False)])
                await until(lambda: len(services.state("api").firing) == 2, "both firing")
                await until(lambda: len(steps(config)) == 2, "level 1 paged")
                # Alertmanager sends the group again every repeat_interval: nobody is paged again.
                delivered = await answered(config, route)
                await until_answered(config, route, delivered + 2)
                incident = services.state("api").incident
                assert incident is not None and incident.alerts == 2
                assert len(steps(config)) == 2

                await am.post(db1, same, resolved=True)
                await until(lambda: len(services.state("api").firing) == 1, "db-1 resolved")
                assert services.state("api").incident is not None  # db-2 still fires

                await am.post(db2, same, resolved=True)
                await until(lambda: services.state("api").healthy, "closed")
            assert services.state("api").last_incident == 1  # one incident, never reopened
            assert len(steps(config)) == 2
            ops = await timeline(config, "api")
            assert ("alert", "prometheus") in ops and ("resolve", "prometheus") in ops
            assert await answered(config, route, "401") == 0
            assert await answered(config, route, "404") == 0
    log = (tmp_path / "am" / "alertmanager.log").read_text()
    assert KEYS["am"] not in (tmp_path / "state" / "notifications.jsonl").read_text()
    assert "status code 4" not in log and "status code 5" not in log


def tls_files(folder: Path) -> Path:
    """pagerd's certificate and key (cert.pem, key.pem) from a test CA; the CA's file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca_file = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca_file


async def test_pagerdutys_own_client_triggers_acknowledges_and_resolves_over_tls(
    tmp_path: Path,
) -> None:
    ca_file = tls_files(tmp_path)
    config = e2e_config(tmp_path, 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    with trio.fail_after(60), ExitStack() as stack:
        async with running(config, offload=None) as daemon:
            client = events_client(base_url(daemon, "https"), KEYS["pd"], ca_file)
            wrong = events_client(base_url(daemon, "https"), "not-a-key", ca_file)
            stack.enter_context(closing(client))
            stack.enter_context(closing(wrong))
            services = daemon.services

            def trigger() -> Any:
                return client.trigger("Disk full", "api", dedup_key="disk-1", severity="error")

            # The client reads PagerDuty's answer: the dedup_key it returns is pagerd's.
            assert await trio.to_thread.run_sync(trigger) == "disk-1"
            assert services.state("api").incident is not None
            await until(lambda: len(steps(config)) == 2, "level 1 paged")
            assert await trio.to_thread.run_sync(client.acknowledge, "disk-1") == "disk-1"
            incident = services.state("api").incident
            assert incident is not None and incident.acknowledged_by == "pd"
            assert await trio.to_thread.run_sync(client.resolve, "disk-1") == "disk-1"
            assert services.state("api").healthy
            # No dedup_key: pagerd makes one, as PagerDuty does, and the client gets it.
            made = await trio.to_thread.run_sync(client.trigger, "CPU hot", "web")
            assert re.fullmatch(r"[0-9a-f]{32}", made)
            assert await trio.to_thread.run_sync(client.resolve, made) == made
            assert services.state("web").healthy
            # A wrong routing key: PagerDuty's 401, which the client raises.
            with pytest.raises(pagerduty.Error):
                await trio.to_thread.run_sync(wrong.trigger, "x", "api")
            # A client that does not trust pagerd's CA refuses it: TLS is really checked.
            other = trustme.CA()
            other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
            untrusting = events_client(
                base_url(daemon, "https"), KEYS["pd"], tmp_path / "other-ca.pem"
            )
            stack.enter_context(closing(untrusting))
            with pytest.raises(pagerduty.Error):
                await trio.to_thread.run_sync(untrusting.trigger, "x", "api")
            assert services.state("api").last_incident == 1
            assert ("ack", "pd") in await timeline(config, "api")


@real_alertmanager.needed
async def test_alertmanagers_pagerduty_sender_pages_and_resolves_through_pagerd(
    tmp_path: Path,
) -> None:
    config = e2e_config(tmp_path)
    with trio.fail_after(120):
        async with running(config, offload=None) as daemon:
            url = f"{base_url(daemon)}/v2/enqueue"
            async with real_alertmanager.running(
                tmp_path / "am", url, pagerduty_routing_key=KEYS["ampd"]
            ) as am:
                services = daemon.services
                labels = {"alertname": "QueueStuck", "service": "web"}
                await am.post(labels, {"summary": "Queue stuck"})
                await until(lambda: services.state("web").incident is not None, "fired")
                await until(lambda: len(steps(config)) == 2, "level 1 paged")
                await am.post(labels, {"summary": "Queue stuck"}, resolved=True)
                await until(lambda: services.state("web").healthy, "resolved")
            assert services.state("web").last_incident == 1
            assert ("resolve", "am-pd") in await timeline(config, "web")
            assert await answered(config, "/v2/enqueue", "202") >= 2


@real_alertmanager.needed
async def test_alertmanagers_watchdog_checks_in_and_never_pages(tmp_path: Path) -> None:
    config = e2e_config(tmp_path)
    route = "/v1/integrations/alertmanager"
    with trio.fail_after(120):
        async with running(config, offload=None) as daemon:
            url = f"{base_url(daemon)}{route}"
            async with real_alertmanager.running(
                tmp_path / "am", url, repeat_interval="1s", bearer=KEYS["dog"]
            ) as am:
                services = daemon.services
                await am.post({"alertname": "Watchdog", "severity": "none"})
                await until(lambda: services.state("cron").heartbeat is not None, "armed")
                armed = services.state("cron").heartbeat
                assert armed is not None and armed.due_at is not None
                # Each resend is a check-in: the deadline moves on, and nothing ever fires.
                delivered = await answered(config, route)
                await until_answered(config, route, delivered + 2)
                moved = services.state("cron").heartbeat
                assert moved is not None and moved.due_at is not None
                assert moved.due_at > armed.due_at
                await am.post({"alertname": "Watchdog", "severity": "none"}, resolved=True)
                await until_answered(config, route, delivered + 3)
            cron = services.state("cron")
            assert cron.healthy and cron.last_incident == 0 and not cron.firing
            assert steps(config) == []


@real_alertmanager.needed
async def test_a_group_mixing_services_pages_the_allowed_one_through_the_fronts(
    tmp_path: Path,
) -> None:
    """`group_by: ["alertname"]` puts api's and web's alert in one payload, to an integration
    that may page api only: through the front processes, api's pages; web's is refused (403,
    with why), which Alertmanager logs with pagerd's reason and does not retry; the core's
    metrics count the refusal."""
    config = e2e_config(tmp_path)
    route = "/v1/integrations/alertmanager"
    with trio.fail_after(120):
        async with running(config, offload=None) as daemon:
            url = f"{base_url(daemon)}{route}"
            async with real_alertmanager.running(
                tmp_path / "am", url, group_by=("alertname",), bearer=KEYS["amapi"]
            ) as am:
                services = daemon.services
                same = {"summary": "Disk /var is 95% full"}
                api = {"alertname": "DiskFull", "service": "api", "instance": "db-1"}
                web = {"alertname": "DiskFull", "service": "web", "instance": "web-1"}
                await am.post_many([(api, same, False), (web, same, False)])
                await until(lambda: services.state("api").incident is not None, "api fired")
                await until(lambda: len(steps(config)) == 2, "level 1 paged for api")
                assert services.state("web").healthy
                with trio.fail_after(20):
                    while True:
                        text = await metrics_text(config.socket)
                        if "pagerd_http_events_refused_total{" in text:
                            break
                        await trio.sleep(0.05)
                refused = re.search(
                    r'pagerd_http_events_refused_total\{integration="prometheus-api",'
                    r'reason="not_in_services"\} (\S+)',
                    text,
                )
                assert refused is not None and float(refused.group(1)) >= 1
                assert await answered(config, route, "403") >= 1
                assert await answered(config, route, "200") == 0
            log = (tmp_path / "am" / "alertmanager.log").read_text()
    assert "unexpected status code 403" in log, log[-3000:]
    # With pagerd's answer as docs/integrations.md shows it.
    (shown,) = re.findall(r"^403 (\{.*\})$", DOC.read_text(), re.MULTILINE)
    assert shown in log.replace('\\"', '"'), log[-3000:]
    assert "after 1 attempts" in log  # a 4xx: not retried
    assert KEYS["amapi"] not in log
    assert all(incident.startswith("api#") for incident, _, _, _ in steps(config))


def _documented_pagerduty_config(folder: Path, pagerd: str) -> str:
    """docs/integrations.md's `pagerduty_configs`, pointed at `pagerd`, its routing key in a
    file, with the short timings of tests/alertmanager.py."""
    blocks: list[str] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if "pagerduty_configs" in b]
    (folder / "pagerd-key").write_text(KEYS["pd"] + "\n")
    timings = "  group_wait: 50ms\n  group_interval: 200ms\n"
    return (
        block.replace("https://pager.example.com", pagerd)
        .replace("/etc/alertmanager/pagerd-key", str(folder / "pagerd-key"))
        .replace("route:\n", "route:\n" + timings, 1)
    )


@real_alertmanager.needed
async def test_the_documented_pagerduty_sender_says_the_alerts_summary(tmp_path: Path) -> None:
    """Its `description`: the summary the group's alerts share; Alertmanager's subject line when
    they share none, never empty (a trigger without a summary is refused)."""
    config = e2e_config(tmp_path)
    with trio.fail_after(120):
        async with running(config, offload=None) as daemon:
            am_config = _documented_pagerduty_config(tmp_path, base_url(daemon))
            async with real_alertmanager.running(tmp_path / "am", "", config=am_config) as am:
                services = daemon.services
                disk = {"alertname": "DiskFull", "service": "api", "instance": "db-1"}
                await am.post(disk, {"summary": "Disk /var is 95% full"})
                queue = {"alertname": "QueueStuck", "service": "web"}
                await am.post_many(
                    [
                        ({**queue, "queue": "mail"}, {"summary": "mail stuck"}, False),
                        ({**queue, "queue": "jobs"}, {"summary": "jobs stuck"}, False),
                    ]
                )
                await until(lambda: services.state("api").incident is not None, "api fired")
                await until(lambda: services.state("web").incident is not None, "web fired")
            api, web = services.state("api").incident, services.state("web").incident
            assert api is not None and api.message == "Disk /var is 95% full"
            assert web is not None and web.message.startswith("[FIRING:2] QueueStuck web")
            assert await answered(config, "/v2/enqueue", "400") == 0
