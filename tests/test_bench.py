"""The benchmark's quick mode, so that the script itself cannot rot. It checks that every
section produced its figures, never the figures' values: performance is measured, not asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_benchmark_quick_mode_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {
        "ingest",
        "latency",
        "memory",
        "restart",
        "timers",
        "storm",
        "retention",
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
    assert "escalation lateness of a quiet service during a storm" in result.stdout
    assert "pipelined alerts/s" in result.stdout
