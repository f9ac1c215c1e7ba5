"""A stop does not wait for work whose result no longer matters (found by review): a name
lookup hung in NSS (LDAP), a reload's read of a config on a hung mount (here a FIFO)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from pagerd.access.peers import Peer
from pagerd.config import load, model
from tests.harness import running, until
from tests.test_access import _config, needs_root

HANG = 15.0  # the hung call ends by itself then (a stop that waits for it takes that long)
BOUND = 10.0  # a stop must take less (systemd's TimeoutStopSec is 20 s)
released = threading.Event()  # the hung call's end, set by the test once it has its answer
entered = threading.Event()  # the hung call has begun


def hung_resolve(peer: Peer, with_groups: bool) -> Peer:
    entered.set()
    released.wait(HANG)
    return attrs.evolve(peer, user="nobody", groups=frozenset())


@needs_root
async def test_a_stop_does_not_wait_behind_a_hung_name_lookup(
    open_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pagerd.front import names

    monkeypatch.setattr(names, "resolve", hung_resolve)
    path = open_folder / "pager.toml"
    path.write_text(_config(open_folder, 'allow_users = ["nobody"]'))
    config = load(path)
    released.clear()
    entered.clear()
    try:
        with trio.fail_after(HANG + 15):
            async with running(config, offload=None):
                config.socket.chmod(0o666)
                client = await trio.lowlevel.open_process(
                    ["/usr/bin/python3", "-c",
                     "import socket,sys,time; s=socket.socket(socket.AF_UNIX);"
                     " s.connect(sys.argv[1]); s.sendall(b'{\"op\":\"ping\"}\\n');"
                     " time.sleep(60)", str(config.socket)],
                    user="nobody", group="nogroup", extra_groups=[],
                )  # fmt: skip
                looked_up = await trio.to_thread.run_sync(entered.wait, 10.0)
                assert looked_up, "the client's name was never looked up"  # hung now
                stopped_at = trio.current_time()
            took = trio.current_time() - stopped_at
    finally:
        released.set()
    client.kill()
    await client.wait()
    assert took < BOUND, f"the stop took {took:.1f}s, waiting for NSS (systemd kills at 20 s)"


async def test_a_stop_does_not_wait_behind_a_reload_reading_a_hung_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(_config(tmp_path, ""))
    config = load(path)
    reading = threading.Event()  # the reload's thread has begun reading the file: it hangs now

    def read(read_path: Path) -> tuple[bytes, dict[str, Any]]:
        if read_path == path:
            reading.set()
        return real_read(read_path)  # the real read: its open() blocks on the FIFO

    real_read = model._read
    monkeypatch.setattr(model, "_read", read)
    # A writer comes after HANG: the read ends then (a stop that waited for it takes that long).
    writer = threading.Timer(HANG, lambda: os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK)))
    writer.start()
    with trio.fail_after(HANG + 15):
        async with running(config, offload=None) as daemon, trio.open_nursery() as nursery:
            path.unlink()
            os.mkfifo(path)  # opening it blocks until a writer comes: as a hung NFS mount
            nursery.start_soon(daemon.reload)
            # Stopped once the read is under way in its thread, whatever this machine's speed:
            # a stop before it would not show that the stop does not wait for it.
            await until(reading.is_set, "the reload reads the config in its thread")
            stopped_at = trio.current_time()
            nursery.cancel_scope.cancel()  # what pagerd's SIGTERM does to a reload under way
        took = trio.current_time() - stopped_at
    writer.cancel()
    with contextlib.suppress(OSError):  # the abandoned thread's read ends now (if it waits)
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert took < BOUND, f"the stop took {took:.1f}s, waiting for the config read"
