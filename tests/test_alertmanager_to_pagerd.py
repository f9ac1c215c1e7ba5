"""The real Alertmanager's deliveries, through pagerd's handler, into the real daemon: alerts
posted to Alertmanager's own `/api/v2/alerts` fire, page, resolve and close.

Only the HTTP layer is not pagerd's here: a loopback receiver records what Alertmanager posts
and the test hands each body to `alertmanager_webhook`, as the HTTP front does. Everything runs
on the real clock (Alertmanager is a real process); every wait is bounded by `trio.fail_after`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from pager.integrations import IntegrationRoute
from pagerd.app import Daemon
from pagerd.config import Config
from pagerd.front.integrations import alertmanager_webhook
from tests import alertmanager as real_alertmanager
from tests.harness import metrics_text, running, steps, until
from tests.servers import Answer, HttpServer, free_port

ROUTE = IntegrationRoute("prometheus", "alertmanager", service_label="service")


async def _forward(receiver: HttpServer, daemon: Daemon, answers: list[int]) -> None:
    """Hand every body Alertmanager posts to the handler, in order, as the HTTP front would."""
    done = 0
    while True:
        while done < len(receiver.requests):
            body = receiver.requests[done].body
            answers.append((await alertmanager_webhook(daemon.services, ROUTE, body)).status)
            done += 1
        await trio.sleep(0.02)


@real_alertmanager.needed
async def test_alerts_posted_to_alertmanager_fire_page_resolve_and_close(
    tmp_path: Path, config: Config
) -> None:
    answers: list[int] = []
    with HttpServer() as receiver:
        receiver.default = Answer(200, {})
        url = f"{receiver.url}/v1/integrations/alertmanager/KEY"
        async with (
            running(config, offload=None) as daemon,
            real_alertmanager.running(tmp_path / "am", url) as am,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_forward, receiver, daemon, answers)
            services = daemon.services
            same = {"summary": "Disk /var is 95% full"}
            db1 = {"alertname": "DiskFull", "service": "api", "instance": "db-1"}
            db2 = {"alertname": "DiskFull", "service": "api", "instance": "db-2"}
            await am.post_many([(db1, same, False), (db2, same, False)])
            await until(lambda: len(services.state("api").firing) == 2, "both firing")
            incident = services.state("api").incident
            assert incident is not None and incident.alerts == 2
            assert incident.message.startswith("Disk /var is 95% full <http://prometheus")
            await until(
                lambda: len(steps(config)) == 2, "level 1 paged"
            )  # level 1: two targets, paged once

            await am.post(db1, same, resolved=True)
            await until(lambda: len(services.state("api").firing) == 1, "one resolved")
            assert services.state("api").incident is not None  # db-2 still fires

            await am.post(db2, same, resolved=True)
            await until(lambda: services.state("api").healthy, "closed")
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}
    assert services.state("api").last_incident == 1  # one incident, never reopened
    assert len(steps(config)) == 2


@real_alertmanager.needed
async def test_the_firing_alertmanager_sent_delivered_again_after_its_resolve_pages_nobody(
    tmp_path: Path, config: Config
) -> None:
    """The reordering of a cluster (a peer that missed the resolve notifies the firing it still
    holds) or of a late retry, made with the real Alertmanager's own bodies: the firing body it
    sent is delivered again after its resolve. It pages nobody. Then the alert fires anew at
    Alertmanager, which sends it with a new `startsAt`: that pages."""
    answers: list[int] = []
    with HttpServer() as receiver:
        receiver.default = Answer(200, {})
        url = f"{receiver.url}/v1/integrations/alertmanager/KEY"
        async with (
            running(config, offload=None) as daemon,
            real_alertmanager.running(tmp_path / "am", url) as am,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_forward, receiver, daemon, answers)
            services = daemon.services
            labels = {"alertname": "QueueStuck", "service": "api"}
            summary = {"summary": "Queue stuck"}
            await am.post(labels, summary)
            await until(lambda: services.state("api").incident is not None, "fired")
            await am.post(labels, summary, resolved=True)
            await until(lambda: services.state("api").healthy, "resolved")
            sent = {json.loads(r.body)["status"]: r.body for r in reversed(receiver.requests)}
            firing, resolved = sent["firing"], sent["resolved"]  # the first of each
            assert (
                json.loads(resolved)["alerts"][0]["startsAt"]
                == json.loads(firing)["alerts"][0]["startsAt"]
            ), "Alertmanager resolves with the startsAt it fired with"

            late = await alertmanager_webhook(services, ROUTE, firing)
            assert late.status == 200
            assert services.state("api").healthy and services.state("api").last_incident == 1
            text = await metrics_text(config.socket)
            assert 'pagerd_stale_firings_total{integration="prometheus"} 1' in text

            await am.post(labels, summary, starts_at=datetime.now(UTC))
            await until(lambda: services.state("api").incident is not None, "fired anew")
            incident = services.state("api").incident
            assert incident is not None and incident.number == 2
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}


@real_alertmanager.needed
async def test_a_cluster_whose_member_missed_the_resolve_pages_once(
    tmp_path: Path, config: Config
) -> None:
    """A real cluster of two Alertmanagers makes the reordering itself: both hold the firing
    alert, only one is told it resolved (as when Prometheus's resolve to the other is lost).
    That one notifies "resolved"; the other, seeing in the gossiped notification log that the
    group was last notified with nothing firing, notifies the firing it still holds, with the
    same `startsAt`, after the resolve. That firing is a late copy: the alert pages once, and
    its incident stays closed."""
    answers: list[int] = []
    gossip = (free_port(), free_port())
    with HttpServer() as receiver:
        receiver.default = Answer(200, {})
        url = f"{receiver.url}/v1/integrations/alertmanager/KEY"
        async with (
            running(config, offload=None) as daemon,
            real_alertmanager.running(
                tmp_path / "am1", url, cluster=(gossip[0], [gossip[1]])
            ) as told,
            real_alertmanager.running(
                tmp_path / "am2", url, cluster=(gossip[1], [gossip[0]])
            ) as missed,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_forward, receiver, daemon, answers)
            services = daemon.services
            labels = {"alertname": "QueueStuck", "service": "api"}
            summary = {"summary": "Queue stuck"}
            started = datetime.now(UTC) - timedelta(minutes=5)
            for am in (told, missed):  # as Prometheus sends to every member
                await am.post(labels, summary, starts_at=started)
            await until(lambda: services.state("api").incident is not None, "fired")
            await told.post(labels, summary, resolved=True, starts_at=started)

            def statuses() -> list[str]:
                return [json.loads(r.body)["status"] for r in receiver.requests]

            def late_firings() -> int:
                sent = statuses()
                return sent[sent.index("resolved") :].count("firing") if "resolved" in sent else 0

            await until(lambda: late_firings() >= 1, "the member that missed it notifies firing")
            await until(lambda: len(answers) == len(receiver.requests), "all handed over")
            state = services.state("api")
            assert state.healthy and state.last_incident == 1, statuses()
            text = await metrics_text(config.socket)
            late = late_firings()
            assert f'pagerd_stale_firings_total{{integration="prometheus"}} {late}' in text
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}
    assert len(steps(config)) == 2  # level 1's two targets, once
