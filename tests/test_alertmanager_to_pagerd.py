"""The real Alertmanager's deliveries, through pagerd's handler, into the real daemon: alerts
posted to Alertmanager's own `/api/v2/alerts` fire, page, resolve and close.

Only the HTTP layer is not pagerd's here: a loopback receiver records what Alertmanager posts
and the test hands each body to `alertmanager_webhook`, as the HTTP front does. Everything runs
on the real clock (Alertmanager is a real process); every wait is bounded by `trio.fail_after`.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from pager.integrations import IntegrationRoute
from pagerd.app import Daemon
from pagerd.config import Config
from pagerd.front.integrations import alertmanager_webhook
from tests import alertmanager as real_alertmanager
from tests.harness import metrics_text, notifications, running, steps, until
from tests.servers import Answer, HttpServer, free_port

ROUTE = IntegrationRoute("prometheus", "alertmanager", service_label="service")


async def _forward(
    receiver: HttpServer, daemon: Daemon, answers: list[int], route: IntegrationRoute = ROUTE
) -> None:
    """Hand every body Alertmanager posts to the handler, in order, as the HTTP front would."""
    done = 0
    while True:
        while done < len(receiver.requests):
            body = receiver.requests[done].body
            answers.append((await alertmanager_webhook(daemon.core, route, body)).status)
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
            # Alertmanager's generatorURL is the page's `link`: in the email's body, never in
            # the SMS or the subject, where it would eat the words (the log writes both).
            link = incident.message.rpartition(" <")[2].removesuffix(">")
            paged = {n["channel"]: n["message"] for n in notifications(config)}
            assert "<http" not in paged["sms"] and "Disk /var is 95% full" in paged["sms"]
            subject, _, body = paged["email"].partition("\n\n")
            assert "<http" not in subject and subject.endswith("Disk /var is 95% full")
            assert "Alert:     Disk /var is 95% full\n" in body
            assert f"Source:    {link}\n" in body and link.startswith("http://")

            await am.post(db1, same, resolved=True)
            await until(lambda: len(services.state("api").firing) == 1, "one resolved")
            assert services.state("api").incident is not None  # db-2 still fires

            await am.post(db2, same, resolved=True)
            await until(lambda: services.state("api").healthy, "closed")
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}
    assert services.state("api").last_incident == 1  # one incident, never reopened
    assert len(steps(config)) == 2


def _statuses(receiver: HttpServer) -> list[str]:
    """The `status` of each body Alertmanager posted, in order."""
    return [json.loads(r.body)["status"] for r in receiver.requests]


def _reopenings(statuses: list[str]) -> int:
    """How many times a "firing" came right after a "resolved": one alert, so each one found
    pagerd healthy, with the same `startsAt` (pagerd cannot tell it from the alert back)."""
    return sum(1 for a, b in itertools.pairwise(statuses) if (a, b) == ("resolved", "firing"))


@real_alertmanager.needed
async def test_a_copy_of_an_earlier_firing_pages_nobody_and_one_of_the_last_pages_again(
    tmp_path: Path, config: Config
) -> None:
    """The reorderings of a cluster (a peer that missed the resolves notifies the firing it
    still holds) or of a late retry, made with the real Alertmanager's own bodies. The alert
    fires, resolves, fires anew (a later `startsAt`) and resolves. Then the first firing's body
    is delivered again: it started before the firing the alert last resolved with, so it is
    stale and pages nobody. Then the second firing's body again: the same `startsAt` as that
    resolve, which is also how the alert looks back after Alertmanager timed it out, so it
    pages (a new incident): one page too many, never one too few."""
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
            first = datetime.now(UTC) - timedelta(minutes=5)
            await am.post(labels, summary, starts_at=first)
            await until(lambda: services.state("api").incident is not None, "fired")
            await am.post(labels, summary, resolved=True, starts_at=first)
            await until(lambda: services.state("api").healthy, "resolved")
            # After the resolve's endsAt, or Alertmanager would merge it into the first.
            second = datetime.now(UTC)
            await am.post(labels, summary, starts_at=second)
            await until(lambda: services.state("api").last_incident == 2, "fired anew")
            await am.post(
                labels, summary, resolved=True, starts_at=second, ends_at=datetime.now(UTC)
            )
            await until(lambda: services.state("api").healthy, "resolved again")
            await until(lambda: len(answers) == len(receiver.requests), "all handed over")
            bodies = [json.loads(r.body) for r in receiver.requests]
            assert [b["status"] for b in bodies] == ["firing", "resolved"] * 2
            starts = [b["alerts"][0]["startsAt"] for b in bodies]
            assert starts[0] == starts[1] < starts[2] == starts[3], starts

            copy = await alertmanager_webhook(daemon.core, ROUTE, receiver.requests[0].body)
            assert copy.status == 200
            assert services.state("api").healthy and services.state("api").last_incident == 2
            text = await metrics_text(config.socket)
            assert 'pagerd_stale_firings_total{integration="prometheus"} 1' in text

            again = await alertmanager_webhook(daemon.core, ROUTE, receiver.requests[2].body)
            assert again.status == 200
            incident = services.state("api").incident
            assert incident is not None and incident.number == 3
            text = await metrics_text(config.socket)
            assert 'pagerd_stale_firings_total{integration="prometheus"} 1' in text
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}


@real_alertmanager.needed
async def test_prometheus_back_after_alertmanager_timed_its_alert_out_pages_again(
    tmp_path: Path, config: Config
) -> None:
    """Prometheus cannot reach Alertmanager (a network blip, a restart) for longer than its
    alert's `endsAt`: Alertmanager resolves the alert itself and notifies it resolved, and
    pagerd closes the incident. Prometheus comes back with the alert still firing, and the
    same `startsAt`; Alertmanager notifies it firing with that `startsAt`. The service is still
    down: pagerd pages again, a new incident."""
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
            started = datetime.now(UTC) - timedelta(minutes=5)
            # Prometheus's last post before it went away: the alert ends soon unless resent.
            soon = datetime.now(UTC) + timedelta(seconds=1)
            await am.post(labels, summary, starts_at=started, ends_at=soon)
            await until(lambda: services.state("api").incident is not None, "fired")
            await until(lambda: services.state("api").healthy, "timed out by Alertmanager")
            await am.post(labels, summary, starts_at=started)  # Prometheus is back
            await until(lambda: services.state("api").incident is not None, "fired again")
            await until(lambda: len(answers) == len(receiver.requests), "all handed over")
            bodies = [json.loads(r.body) for r in receiver.requests]
            assert [b["status"] for b in bodies] == ["firing", "resolved", "firing"]
            assert len({b["alerts"][0]["startsAt"] for b in bodies}) == 1, "one startsAt"
            state = services.state("api")
            assert state.incident is not None and state.incident.number == 2
            await until(lambda: len(steps(config)) == 4, "level 1 paged for each incident")
            text = await metrics_text(config.socket)
            assert "pagerd_stale_firings_total{" not in text
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}


@real_alertmanager.needed
async def test_a_cluster_whose_member_missed_the_resolve_pages_again_until_it_is_told(
    tmp_path: Path, config: Config
) -> None:
    """A real cluster of two Alertmanagers makes the reordering itself: both hold the firing
    alert, only one is told it resolved (as when Prometheus's resolve to the other is lost).
    That one notifies "resolved"; the other, seeing in the gossiped notification log that the
    group was last notified with nothing firing, notifies the firing it still holds, with the
    same `startsAt`, after the resolve. pagerd cannot tell that from the alert back after an
    Alertmanager timed it out, so it pages again (a new incident): one page too many, never one
    too few. Prometheus resends the resolve; once the other member has it, it notifies
    "resolved" and the incident closes."""
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

            await until(
                lambda: _reopenings(_statuses(receiver)) >= 1,
                "the member that missed it notifies firing",
            )
            await until(lambda: len(answers) == len(receiver.requests), "all handed over")
            state = services.state("api")
            reopened = _reopenings(_statuses(receiver))
            assert state.incident is not None, _statuses(receiver)
            assert state.last_incident == 1 + reopened, _statuses(receiver)

            await missed.post(labels, summary, resolved=True, starts_at=started)  # the resend
            await until(lambda: services.state("api").healthy, "resolved by both")
            await until(lambda: len(answers) == len(receiver.requests), "all handed over")
            text = await metrics_text(config.socket)
            assert "pagerd_stale_firings_total{" not in text
            incidents = services.state("api").last_incident
            nursery.cancel_scope.cancel()
    assert set(answers) == {200}
    assert incidents == 1 + _reopenings(_statuses(receiver)) >= 2
    assert len(steps(config)) == 2 * incidents  # level 1's two targets, each incident


@real_alertmanager.needed
async def test_a_group_of_several_services_pages_the_one_this_integration_may_page(
    tmp_path: Path, config: Config
) -> None:
    """`group_by: ["alertname"]`: the real Alertmanager sends api's alert and web's in one
    payload. The integration may page api only (`services`): api's alert pages and resolves;
    web's is refused on its own (403), never taking api's with it."""
    route = IntegrationRoute(
        "prometheus", "alertmanager", service_label="service", services=frozenset({"api"})
    )
    answers: list[int] = []
    with HttpServer() as receiver:
        receiver.default = Answer(200, {})
        url = f"{receiver.url}/v1/integrations/alertmanager/KEY"
        async with (
            running(config, offload=None) as daemon,
            real_alertmanager.running(tmp_path / "am", url, group_by=("alertname",)) as am,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_forward, receiver, daemon, answers, route)
            services = daemon.services
            same = {"summary": "Disk /var is 95% full"}
            api = {"alertname": "DiskFull", "service": "api", "instance": "db-1"}
            web = {"alertname": "DiskFull", "service": "web", "instance": "web-1"}
            await am.post_many([(api, same, False), (web, same, False)])
            await until(lambda: services.state("api").incident is not None, "api fired")
            await until(lambda: len(steps(config)) == 2, "level 1 paged for api")
            await until(
                lambda: any(b'"web"' in r.body for r in receiver.requests), "web's alert sent"
            )
            await until(lambda: len(answers) == len(receiver.requests), "all handed over")
            sent = [
                {a["labels"]["service"] for a in json.loads(r.body)["alerts"]}
                for r in receiver.requests
            ]
            # Mostly one payload with both (group_wait); a loaded machine may see Alertmanager
            # send them apart: either way, the payload with web's alert is refused.
            assert set().union(*sent) == {"api", "web"}
            assert answers[next(i for i, found in enumerate(sent) if "web" in found)] == 403
            assert services.state("web").healthy

            await am.post_many([(api, same, True), (web, same, True)])
            await until(lambda: services.state("api").healthy, "api resolved")
            nursery.cancel_scope.cancel()
    assert set(answers) == {403}
    assert services.state("api").last_incident == 1 and services.state("web").last_incident == 0
    assert all(n[0].startswith("api#") for n in steps(config))
