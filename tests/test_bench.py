"""The benchmark's quick mode, so that the script itself cannot rot. It checks that every
section produced its figures, never the figures' values: performance is measured, not asserted.
The quick run happens once for the module; the peer section's Alertmanager rows are checked in a
test of their own, skipped loudly where Alertmanager is not installed, and so is the postgresql
section's, where there is no PostgreSQL (the run is given the tests' server, `tests.postgres`)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import alertmanager, postgres

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The quick run's results and its printed table."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ)
    server = postgres.server()  # this machine's, or a throwaway one the tests started
    if server is not None:
        env["PAGERD_BENCH_POSTGRES"] = server
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a loaded machine takes minutes
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())["results"], result.stdout


def test_benchmark_quick_mode_runs_every_section(quick: tuple[dict[str, Any], str]) -> None:
    results, stdout = quick
    assert set(results) == {
        "ingest",
        "latency",
        "memory",
        "restart",
        "timers",
        "storm",
        "retention",
        "windows",
        "peer",
        "postgresql",
    }
    assert results["ingest"]["pipelined_ok"] == results["ingest"]["events"]
    assert results["latency"]["notifications"] > 0
    assert math.isfinite(results["latency"]["handed_p99_ms"])  # the log's stamps were read
    assert math.isfinite(results["latency"]["reply_p99_ms"])  # and the replies' times
    assert math.isfinite(results["latency"]["ceiling_reply_p99_ms"])
    assert results["latency"]["loop_cpu_us_per_event"] > 0  # the loop's thread was found
    assert results["timers"]["fired"] == results["timers"]["escalations"]
    assert results["retention"]["pruned"] == 50 * 2  # each service's latest incident is kept
    assert results["storm"]["quiet_escalations"] > 0
    assert math.isfinite(results["storm"]["quiet_lateness_p99_ms"])  # every one was escalated
    assert "escalation lateness of a quiet service during a storm" in stdout
    assert "pipelined alerts/s" in stdout
    windows = results["windows"]
    for label in ("plain", "windows"):  # the same storm and statuses, with windows and without
        assert windows[f"{label}_pipelined_ok"] == windows["events"]
        assert math.isfinite(windows[f"{label}_status_p99_ms"])
    assert "maintenance windows / none" in stdout


def test_the_peer_section_measures_pagerd_over_http(quick: tuple[dict[str, Any], str]) -> None:
    peer, stdout = quick[0]["peer"], quick[1]
    for n in (1, 64):
        for endpoint in ("rest", "amrcv"):  # REST /alert and the Alertmanager receiver
            assert peer[f"{endpoint}_reqresp_{n}"] > 0
            assert peer[f"{endpoint}_reqresp_{n}_failed"] == 0  # no 429 or 503 in the rates
        assert peer[f"http200_{n}"] > 0  # the HTTP front's ceiling
        assert peer[f"generator_sink_{n}"] > 0  # and the generator's own
    assert peer["amrcv_batched_alerts"] > 0 and peer["amrcv_batched_failed"] == 0
    for endpoint in ("rest", "amrcv"):
        assert math.isfinite(peer[f"{endpoint}_reqresp_64_p99_ms"])
        # Every paced alert paged, matched to its request by the receiver.
        assert peer[f"{endpoint}_first_page_paged"] == 100
        assert math.isfinite(peer[f"{endpoint}_first_page_p99_ms"])
    assert peer["pagerd_delivery_paged"] == peer["pagerd_delivery_incidents"] == 200
    assert peer["pagerd_delivery_all_paged_s"] is not None
    assert peer["pagerd_resend_failed"] == 0
    # A page re-sent after kill -9 can only be one in flight at the kill, under its own key.
    assert peer["pagerd_repaged_after_kill9"] == peer["pagerd_repaged_after_kill9_same_key"]
    # The same delivery with every send made by the daemon itself (`[delivery] workers = 0`).
    assert peer["pagerd_w0_delivery_paged"] == peer["pagerd_w0_delivery_incidents"] == 200
    assert peer["pagerd_w0_delivery_all_paged_s"] is not None
    assert peer["pagerd_delivery_workers"] >= 1 and peer["pagerd_delivery_workers_cpu_s"] > 0
    assert peer["pagerd_w0_delivery_workers_cpu_s"] == 0
    assert "incidents paged (batches of 100), workers=0" in stdout
    assert peer["pagerd_open_200_rss_mb"] > 0
    for row in ("HTTP front: REST requests/s vs fixed-200 ceiling", "first page ms", "re-paged"):
        assert row in stdout


@alertmanager.needed
def test_the_peer_section_measures_alertmanager_beside_it(
    quick: tuple[dict[str, Any], str],
) -> None:
    peer, stdout = quick[0]["peer"], quick[1]
    assert peer["alertmanager"] is not None
    for n in (1, 64):
        assert peer[f"am_reqresp_{n}"] > 0 and peer[f"am_reqresp_{n}_failed"] == 0
    assert peer["am_batched_alerts"] > 0
    assert math.isfinite(peer["am_reqresp_64_p99_ms"])
    assert peer["am_first_page_paged"] == 100
    assert peer["am_delivery_paged"] >= peer["am_delivery_incidents"] == 200
    assert peer["am_repaged_after_kill9"] > 0  # its notification log is only saved periodically
    assert peer["am_open_200_rss_mb"] > 0
    assert "not installed" not in stdout


def test_the_postgresql_section_measures_pagerd_beside_its_ceiling(
    quick: tuple[dict[str, Any], str],
) -> None:
    if postgres.server() is None:
        pytest.skip(postgres.MISSING)
    pg, stdout = quick[0]["postgresql"], quick[1]
    assert "skipped" not in pg
    assert pg["pipelined_ok"] == pg["events"]  # one node: every alert answered ok
    # Three nodes: every alert answered, ok or busy (a node bounds what waits for owners).
    assert pg["three_pipelined_ok"] > 0
    assert pg["three_pipelined_ok"] + pg["three_pipelined_busy"] == pg["three_events"]
    assert pg["ceiling_pipelined"] > 0
    for n in (1, 8):
        assert pg[f"reqresp_{n}"] > 0 and pg[f"ceiling_reqresp_{n}"] > 0
    assert pg["latency_notifications"] > 0
    for prefix in ("handed_", "reply_", "ceiling_reply_"):  # the log's stamps, the replies
        assert math.isfinite(pg[f"{prefix}p99_ms"])
    # Every run killed a node and a survivor paged the level that was due, once.
    assert pg["failover_measured"] == pg["failover_runs"] == 3
    assert pg["failover_paged_twice"] == 0
    assert math.isfinite(pg["failover_p99_s"])
    assert pg["failover_target_s"] == pg["lease_ttl_s"] + 2
    for row in (
        "one node: pipelined alerts/s",
        "three nodes: pipelined alerts/s",
        "PostgreSQL, one node: request/response/s, 8 connections",
        "PostgreSQL, one node: alert->transport ms",
        "PostgreSQL, three nodes: failover s p50/p99/max (3 runs",
    ):
        assert row in stdout


def test_the_postgresql_section_says_so_without_postgresql(tmp_path: Path) -> None:
    """No server at the DSN given: the section is skipped, loudly, and the run goes on."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "bench.json"
    env = {**os.environ, "PAGERD_BENCH_POSTGRES": f"host=127.0.0.1 port={port} user=postgres"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--only", "postgresql",
         "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NO POSTGRESQL AT $PAGERD_BENCH_POSTGRES" in result.stderr
    assert "skipped" in json.loads(out.read_text())["results"]["postgresql"]
    assert "NOT MEASURED" in result.stdout
