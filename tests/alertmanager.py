"""The real Prometheus Alertmanager, run for tests: Debian's `prometheus-alertmanager` (0.25).

`running(folder, webhook_url)` starts it on a free loopback port with its own storage folder and
a config whose only receiver is a `webhook_configs` one pointing at `webhook_url`; alerts posted
to its `/api/v2/alerts` (`post`) are grouped by it and delivered there in its webhook payload
(version 4), resolved ones too. Timings are short, so a test sees a delivery within a second or
so; nothing waits on the real clock for more than that.

Mark each test that runs it with `@alertmanager.needed`: where the binary is missing, the test
is skipped with a reason in capitals that says how to install it (`scripts/install-test-tools`,
which `scripts/test` runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

import attrs
import httpx
import pytest
import trio

from tests.servers import free_port

NAMES: Final = ("prometheus-alertmanager", "alertmanager")
"""Debian names the binary `prometheus-alertmanager`; upstream's release calls it `alertmanager`."""

CONFIG: Final = """\
route:
  receiver: pagerd
  group_by: [{group_by}]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: pagerd
{receiver}
"""
WEBHOOK: Final = """\
    webhook_configs:
      - url: "{url}"
        send_resolved: true"""
BEARER: Final = """
        http_config:
          authorization:
            type: Bearer
            credentials: "{key}"
"""
PAGERDUTY: Final = """\
    pagerduty_configs:
      - url: "{url}"
        routing_key: "{routing_key}"
        send_resolved: true"""


MISSING: Final = (
    "PROMETHEUS ALERTMANAGER IS NOT INSTALLED: the tests against the real Alertmanager did not"
    " run. Install it with scripts/install-test-tools (apt-get install prometheus-alertmanager),"
    " or name the binary in PAGERD_ALERTMANAGER."
)


def find() -> str | None:
    """The Alertmanager binary's path, None if there is none."""
    override = os.environ.get("PAGERD_ALERTMANAGER")
    for name in ([override] if override else []) + list(NAMES):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


needed = pytest.mark.skipif(find() is None, reason=MISSING)
"""Mark a test that runs the real Alertmanager: skipped, saying so loudly, where it is missing.
(A skip from inside a Trio test loses its reason: the mark decides before the test runs.)"""


def binary() -> str:
    """The Alertmanager binary's path; skips the test, saying why, when there is none."""
    path = find()
    if path is None:
        pytest.skip(MISSING)
    return path


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@attrs.define
class Alertmanager:
    url: str
    process: trio.Process
    client: httpx.AsyncClient

    async def post(
        self,
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
        *,
        resolved: bool = False,
        generator_url: str = "http://prometheus.example:9090/graph?g0.expr=up",
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> None:
        """Post one alert to `/api/v2/alerts`, as Prometheus does: firing (ends in an hour, as
        Prometheus re-sends it) or resolved (ended a second ago), or ends at `ends_at`; started
        five minutes ago, or at `starts_at`."""
        await self.post_many(
            [(labels, annotations or {}, resolved)],
            generator_url=generator_url,
            starts_at=starts_at,
            ends_at=ends_at,
        )

    async def post_many(
        self,
        alerts: Sequence[tuple[dict[str, str], dict[str, str], bool]],
        *,
        generator_url: str = "http://prometheus.example:9090/graph?g0.expr=up",
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> None:
        now = datetime.now(UTC)
        ended = ends_at or now - timedelta(seconds=1)
        ends = ends_at or now + timedelta(hours=1)
        body: list[dict[str, Any]] = [
            {
                "labels": labels,
                "annotations": annotations,
                "startsAt": iso(starts_at or now - timedelta(minutes=5)),
                "endsAt": iso(ended if resolved else ends),
                "generatorURL": generator_url,
            }
            for labels, annotations, resolved in alerts
        ]
        response = await self.client.post(f"{self.url}/api/v2/alerts", json=body)
        assert response.status_code == 200, response.text


def _prepare(folder: Path, config: str) -> tuple[Path, BinaryIO]:
    """The config file written in `folder`, and its log file opened."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "alertmanager.yml"
    config_file.write_text(config)
    return config_file, (folder / "alertmanager.log").open("wb")


@asynccontextmanager
async def running(
    folder: Path,
    webhook_url: str,
    *,
    group_by: Sequence[str] = ("alertname", "service"),
    group_wait: str = "50ms",
    group_interval: str = "200ms",
    repeat_interval: str = "1h",
    pagerduty_routing_key: str | None = None,
    bearer: str | None = None,
    cluster: tuple[int, Sequence[int]] | None = None,
    config: str | None = None,
) -> AsyncIterator[Alertmanager]:
    """Alertmanager on a free loopback port, ready; stopped (and waited for) on exit.

    Its receiver posts to `webhook_url`: a `webhook_configs` one, or with
    `pagerduty_routing_key` a `pagerduty_configs` one (Events v2, `webhook_url` being the whole
    enqueue URL, `.../v2/enqueue`). `bearer` is a key the webhook sends in `Authorization:
    Bearer` (its `http_config.authorization`). `cluster` is (its gossip port, its peers'
    ports): a member of a cluster on loopback, with short gossip and peer timeouts, instead of
    a lone Alertmanager. `config`: a whole config file of the caller's instead (the docs'),
    used as it is."""
    path = binary()
    if pagerduty_routing_key is None:
        receiver = WEBHOOK.format(url=webhook_url)
        if bearer is not None:
            receiver += BEARER.format(key=bearer).rstrip("\n")
    else:
        receiver = PAGERDUTY.format(url=webhook_url, routing_key=pagerduty_routing_key)
    if config is None:
        config = CONFIG.format(
            group_by=", ".join(f'"{label}"' for label in group_by),
            group_wait=group_wait,
            group_interval=group_interval,
            repeat_interval=repeat_interval,
            receiver=receiver,
        )
    config_file, log = _prepare(folder, config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        path,
        f"--config.file={config_file}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=debug",
    ]
    if cluster is None:
        command.append("--cluster.listen-address=")  # no gossip: one Alertmanager, no port
    else:
        gossip, peers = cluster
        command += [
            f"--cluster.listen-address=127.0.0.1:{gossip}",
            f"--cluster.advertise-address=127.0.0.1:{gossip}",
            *(f"--cluster.peer=127.0.0.1:{peer}" for peer in peers),
            "--cluster.peer-timeout=100ms",  # a second member waits this long to notify
            "--cluster.gossip-interval=20ms",
            "--cluster.pushpull-interval=1s",
            "--cluster.settle-timeout=2s",
        ]
    process = await trio.lowlevel.open_process(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            with trio.fail_after(20):
                while True:
                    try:
                        if (await client.get(f"{url}/-/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.poll() is not None:
                        raise AssertionError(
                            f"alertmanager exited {process.returncode}:"
                            f" {(folder / 'alertmanager.log').read_text()[-2000:]}"
                        )
                    await trio.sleep(0.05)
            yield Alertmanager(url, process, client)
    finally:
        process.terminate()
        with trio.move_on_after(10) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            await process.wait()
        log.close()
