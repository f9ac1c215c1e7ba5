"""The real `pagerd` and `pager` programs, run as an operator runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent

# Two services, two levels of two seconds: escalation within a test's patience.
CONFIG = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[channels.email]
transport = "log"
[channels.sms]
transport = "log"

[policies.fast]
[[policies.fast.levels]]
targets = ["email:alice@example.com", "sms:+14155550100"]
ack_timeout = "2s"
[[policies.fast.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "2s"

[services.api]
policy = "fast"
[services.web]
policy = "fast"
"""


def _program(name: str, module: str) -> list[str]:
    # The installed console script when there is one: that is what operators run.
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


PAGERD = _program("pagerd", "pagerd")
PAGER = _program("pager", "pager.cli")


def pager(socket: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PAGER, "--socket", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Pagerd:
    """A `pagerd --config FILE` process, its stderr kept in a file for when a test fails."""

    def __init__(self, config: Path, socket: Path, log: Path) -> None:
        self.config = config
        self.socket = socket
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 15.0) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*PAGERD, "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        deadline = time.monotonic() + ready_within
        while pager(self.socket, "ping", timeout=5).returncode != 0:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pagerd exited {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pagerd not ready in {ready_within}s:\n{self.stderr()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """`kill -9`: no cleanup of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, within: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=within)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_for(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.02)


def env_without_pager_socket() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PAGER_SOCKET"}
