"""The real pagerd: a SIGTERM during a reload whose config read hangs (the file on a hung NFS
mount; here a FIFO that nobody writes) stops the process within its bound (found by review: it
logged "stopping", removed its socket, and stayed alive until systemd's SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.processes import CONFIG, Pagerd, wait_for

HANG = 25.0  # the read ends by itself then (a stop that waited for it takes that long)
BOUND = 15.0  # the stop's own bound; systemd's TimeoutStopSec is 20 s


OPEN_CALLS = {"2", "257"}  # open, openat on x86_64


def _in_open(pid: int) -> bool:
    """Whether a thread of `pid` is blocked in open() (the reload's read of the FIFO)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "syscall").read_text().split()[0] in OPEN_CALLS:
                return True
    return False


@pytest.mark.skipif(
    os.uname().machine != "x86_64" or not Path("/proc/self/syscall").exists(),
    reason="reads /proc/PID/task/TID/syscall (x86_64 numbers)",
)
def test_sigterm_during_a_reload_reading_a_hung_config_stops_the_process(tmp_path: Path) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    daemon = Pagerd(config, tmp_path / "run" / "pager.sock", tmp_path / "pagerd.log")
    writer = threading.Timer(HANG, lambda: os.close(os.open(config, os.O_WRONLY | os.O_NONBLOCK)))
    try:
        daemon.start()
        assert daemon.proc is not None
        config.unlink()
        os.mkfifo(config)
        writer.start()
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _in_open(daemon.proc.pid), 10, "the reload blocked reading")
        started = time.monotonic()
        code = daemon.terminate(within=HANG + 15)
        took = time.monotonic() - started
    finally:
        writer.cancel()
        daemon.stop()
        with contextlib.suppress(OSError):  # a read still waiting, if any
            os.close(os.open(config, os.O_WRONLY | os.O_NONBLOCK))
    assert code == 0, daemon.stderr()
    assert took < BOUND, f"the stop took {took:.1f}s, waiting for the config read"
