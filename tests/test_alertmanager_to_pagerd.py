"""The real Alertmanager's deliveries, through pagerd's handler, into the real daemon: alerts
posted to Alertmanager's own `/api/v2/alerts` fire, page, resolve and close.

Only the HTTP layer is not pagerd's here: a loopback receiver records what Alertmanager posts
and the test hands each body to `alertmanager_webhook`, as the HTTP front does. Everything runs
on the real clock (Alertmanager is a real process); every wait is bounded by `trio.fail_after`.
"""

from __future__ import annotations

from pathlib import Path

import trio

from pager.integrations import IntegrationRoute
from pagerd.app import Daemon
from pagerd.config import Config
from pagerd.front.integrations import alertmanager_webhook
from tests import alertmanager as real_alertmanager
from tests.harness import running, steps, until
from tests.servers import Answer, HttpServer

ROUTE = IntegrationRoute("prometheus", "alertmanager", service_label="service")


async def _forward(receiver: HttpServer, daemon: Daemon, answers: list[int]) -> None:
    """Hand every body Alertmanager posts to the handler, in order, as the HTTP front would."""
    done = 0
    while True:
        while done < len(receiver.requests):
            body = receiver.requests[done].body
            answers.append((await alertmanager_webhook(daemon.core, ROUTE, body)).status)
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
