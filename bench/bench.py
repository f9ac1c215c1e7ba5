"""pagerd's benchmark: starts the real `pagerd` process on generated configs and measures it, next
to the ceilings of the same work on the same machine (`ceilings.py`), and prints a table.

    .venv/bin/python bench/bench.py                 # the full run (several minutes)
    .venv/bin/python bench/bench.py --quick         # small sizes: seconds (the test suite runs it)
    .venv/bin/python bench/bench.py --json out.json --only ingest latency
    .venv/bin/python bench/bench.py --only peer     # beside Alertmanager (`peer.py`)
    .venv/bin/python bench/bench.py --only postgresql  # on PostgreSQL, one node and three

A measurement, not a test: it never fails on a figure. Figures on shared machines drift from
run to run; the ratios to the ceilings, measured in the same run, drift much less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs
import psycopg
import trio
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # peer.py and httpload.py, beside this script

import peer  # noqa: E402

from pager.domain import Alert, Level, Policy, ServiceState, Target, decide  # noqa: E402
from pager.protocol import parse_incident_id  # noqa: E402
from pager.shards import SHARDS, preferred, shard_of  # noqa: E402
from pager.timefmt import timestamp  # noqa: E402
from pagerd.storage import retention  # noqa: E402
from pagerd.storage.offload import in_thread  # noqa: E402
from pagerd.storage.port import Attempt, Transition, Write  # noqa: E402
from pagerd.storage.sqlite.store import Store  # noqa: E402

PYTHON = sys.executable
QUIET_ACK_TIMEOUT = 1.0
T = TypeVar("T")
TWO_LEVELS = Policy(
    levels=(
        Level((Target("email", "first@example.com"),), 900.0),
        Level((Target("email", "second@example.com"),), 900.0),
    )
)


# Processes --------------------------------------------------------------------------------


def write_config(
    folder: Path, services: int, ack_timeout: str = "15m", quiet: int = 0, windows: int = 0
) -> Path:
    """`services` services svc-N on two levels, and `quiet` more, quiet-N, whose first level
    times out after QUIET_ACK_TIMEOUT seconds; each svc-N with `windows` daily maintenance
    windows of ten minutes (`maintenance_windows`)."""
    lines = [
        "[daemon]",
        'socket = "pager.sock"',
        'state_dir = "state"',
        "[channels.email]",
        'transport = "log"',
        "[policies.two-levels]",
        "[[policies.two-levels.levels]]",
        'targets = ["email:first@example.com"]',
        f'ack_timeout = "{ack_timeout}"',
        "[[policies.two-levels.levels]]",
        'targets = ["email:second@example.com"]',
        f'ack_timeout = "{ack_timeout}"',
    ]
    for i in range(services):
        lines += [f"[services.svc-{i}]", 'policy = "two-levels"']
        lines += maintenance_windows(f"svc-{i}", windows)
    if quiet:
        lines += [
            "[policies.quick]",
            "[[policies.quick.levels]]",
            'targets = ["email:first@example.com"]',
            f'ack_timeout = "{QUIET_ACK_TIMEOUT:g}s"',
            "[[policies.quick.levels]]",
            'targets = ["email:second@example.com"]',
        ]
    for i in range(quiet):
        lines += [f"[services.quiet-{i}]", 'policy = "quick"']
    path = folder / "pager.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def maintenance_windows(service: str, count: int) -> list[str]:
    """`count` daily windows of ten minutes, three hours apart, in London, none of them now
    (the services page as they would without them): the windows' cost is measured, not the
    silence's."""
    hour = time.gmtime().tm_hour
    lines = []
    for k in range(count):
        start = (hour + 2 + 3 * k) % 24
        lines += [
            f"[[services.{service}.maintenance]]",
            'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]',
            f'from = "{start:02d}:10"',
            f'until = "{start:02d}:20"',
            'timezone = "Europe/London"',
        ]
    return lines


@contextmanager
def pagerd(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (config.parent / "pagerd.log").open("ab")
    proc = subprocess.Popen(
        [PYTHON, "-m", "pagerd", "--config", str(config), "--log-level", "error"],
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def ceiling(mode: str, folder: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    sock = folder / f"{mode}.sock"
    args = [PYTHON, str(ROOT / "bench" / "ceilings.py"), mode, str(sock)]
    if mode == "groupcommit":
        args.append(str(folder / f"{mode}.db"))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(sock, proc)
        yield sock, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_ready(sock: Path, proc: subprocess.Popen[bytes], within: float = 60.0) -> float:
    """Seconds until `sock` answers a ping (any line gets a reply)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            trio.run(_ping, sock)
            return time.monotonic() - start
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"{sock} not answering within {within}s")


async def _ping(sock: Path) -> None:
    stream = await trio.open_unix_socket(str(sock))
    async with stream:
        await stream.send_all(b'{"op":"ping","service":"svc-0"}\n')
        if not await stream.receive_some(65536):
            raise OSError("closed")


def loop_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) of the process's main thread: the event loop's."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# Load -------------------------------------------------------------------------------------


def alert_line(i: int, services: int) -> bytes:
    return b'{"op":"alert","service":"svc-%d","message":"load"}\n' % (i % services)


async def pipelined(sock: Path, lines: list[bytes]) -> tuple[float, int]:
    """Send every line without waiting, read every reply: (seconds, replies that were ok)."""
    stream = await trio.open_unix_socket(str(sock))
    ok = 0
    start = trio.current_time()

    async def write() -> None:
        for i in range(0, len(lines), 512):
            await stream.send_all(b"".join(lines[i : i + 512]))

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(write)
        seen = 0
        rest = b""
        while seen < len(lines):
            data = await stream.receive_some(1 << 20)
            if not data:
                raise RuntimeError("connection closed early")
            chunks = (rest + data).split(b"\n")
            rest = chunks.pop()
            seen += len(chunks)
            ok += sum(1 for c in chunks if c.startswith(b'{"ok":true'))
    return trio.current_time() - start, ok


async def request_response(
    sock: Path, connections: int, seconds: float, line: Callable[[int], bytes]
) -> float:
    """Requests per second from `connections` clients, each waiting for every reply."""
    done = 0

    async def client(k: int) -> None:
        nonlocal done
        stream = await trio.open_unix_socket(str(sock))
        async with stream:
            i = k
            with trio.move_on_at(deadline):
                while True:
                    await stream.send_all(line(i))
                    reply = b""
                    while not reply.endswith(b"\n"):
                        reply += await stream.receive_some(65536)
                    done += 1
                    i += connections

    deadline = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for k in range(connections):
            nursery.start_soon(client, k)
    return done / seconds


async def paced(sock: Path, schedule: list[tuple[float, bytes]]) -> tuple[list[float], list[float]]:
    """Send each line at its time (seconds from now) on one connection; the wall-clock times
    each line was sent and its reply read, in order."""
    stream = await trio.open_unix_socket(str(sock))
    sent: list[float] = []
    replied: list[float] = []
    start = trio.current_time()

    async def drain() -> None:
        while len(replied) < len(schedule):
            data = await stream.receive_some(1 << 20)
            if not data:
                return
            replied.extend([time.time()] * data.count(b"\n"))

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for at, line in schedule:
            await trio.sleep_until(start + at)
            sent.append(time.time())
            await stream.send_all(line)
    return sent, replied


def reply_ms(sent: list[float], replied: list[float], prefix: str) -> dict[str, float]:
    """Send -> reply read, in ms, over the lines that had their reply."""
    return spread([(r - s) * 1000 for s, r in zip(sent, replied, strict=False)], prefix)


# Databases prepared offline ---------------------------------------------------------------


def prepare_open_incidents(db: Path, count: int, deadline: Callable[[int], float]) -> None:
    """`count` services with an open incident at level 1, written as pagerd writes them."""
    store = Store.open(db)
    now = time.time()
    try:
        batch: list[Write] = []
        for i in range(count):
            before = ServiceState(f"svc-{i}")
            after, notes = decide(before, Alert("prepared"), now, TWO_LEVELS)
            assert after.incident is not None
            after = attrs.evolve(after, incident=attrs.evolve(after.incident, deadline=deadline(i)))
            batch.append(Transition(before, after, notes, now))
            # Level 1 was delivered before the "crash": only escalations are left to do.
            batch += [Attempt(n.id, now, "sent") for n in notes]
            if len(batch) >= 10_000:
                store.write(batch)
                batch = []
        store.write(batch)
    finally:
        store.close()


def wait_delivered(db: Path, within: float = 120.0) -> None:
    """Until no notification in `db` is left to deliver."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db, timeout=30)
        try:
            left = conn.execute("SELECT COUNT(*) FROM notifications WHERE state != 'sent'")
            if left.fetchone()[0] == 0:
                return
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"notifications in {db} still undelivered after {within}s")


def count_level2(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM notifications WHERE level = 2").fetchone()[0])
    finally:
        conn.close()


# Sections ---------------------------------------------------------------------------------


def spread(ms: list[float], prefix: str = "") -> dict[str, float]:
    """`{prefix}p50_ms`, `{prefix}p99_ms` and `{prefix}max_ms` of `ms` (NaN if there are none)."""
    return {
        f"{prefix}p50_ms": percentile(ms, 50),
        f"{prefix}p99_ms": percentile(ms, 99),
        f"{prefix}max_ms": max(ms, default=math.nan),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def section_ingest(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    services, events, seconds = sizes["ingest_services"], sizes["ingest_events"], sizes["reqresp"]
    lines = [alert_line(i, services) for i in range(events)]
    result: dict[str, Any] = {"services": services, "events": events}
    with ceiling("groupcommit", folder) as (sock, _):
        # One pass takes half a second and varies by 30 % from one to the next: the median of
        # five is the ceiling.
        rates = []
        for _ in range(5):
            elapsed, ok = trio.run(pipelined, sock, lines)
            rates.append(ok / elapsed)
        result["ceiling_pipelined"] = statistics.median(rates)
        result["ceiling_pipelined_runs"] = rates
    with ceiling("echo", folder) as (sock, _):
        for n in (1, 8, 64):
            rate = trio.run(request_response, sock, n, seconds, lambda i: alert_line(i, services))
            result[f"ceiling_reqresp_{n}"] = rate
    (folder / "ingest").mkdir()
    config = write_config(folder / "ingest", services)
    with pagerd(config) as proc:
        wait_ready(config.parent / "pager.sock", proc)
        cpu = loop_cpu_s(proc.pid)
        elapsed, ok = trio.run(pipelined, config.parent / "pager.sock", lines)
        # The decision loop's budget on the socket path: its thread's CPU an event (the first
        # alert of each service opens an incident, and its page is handed to the outbox).
        result["pipelined_loop_us"] = (loop_cpu_s(proc.pid) - cpu) / max(1, ok) * 1e6
        result["pipelined"] = ok / elapsed
        result["pipelined_ok"] = ok
        # The storm's notifications are still being delivered: measure the next on a quiet pagerd.
        wait_delivered(config.parent / "state" / "pager.db")
        for n in (1, 8, 64):
            cpu = loop_cpu_s(proc.pid)
            rate = trio.run(
                request_response,
                config.parent / "pager.sock",
                n,
                seconds,
                lambda i: alert_line(i, services),
            )
            result[f"reqresp_{n}"] = rate
            done = max(1.0, rate * seconds)
            result[f"reqresp_{n}_loop_us"] = (loop_cpu_s(proc.pid) - cpu) / done * 1e6
    return result


def section_latency(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    services, rate, seconds = sizes["latency_services"], sizes["latency_rate"], sizes["latency_s"]
    (folder / "latency").mkdir()
    config = write_config(folder / "latency", services)
    # Alert a service, and report it healthy half a second later: every alert opens an incident.
    schedule: list[tuple[float, bytes]] = []
    for k in range(int(rate * seconds) // 2):
        at = k * 2 / rate
        name = f"svc-{k % services}".encode()
        schedule.append((at, b'{"op":"alert","service":"%s"}\n' % name))
        schedule.append((at + 0.5, b'{"op":"healthy","service":"%s"}\n' % name))
    schedule.sort(key=lambda item: item[0])
    with pagerd(config) as proc:
        wait_ready(config.parent / "pager.sock", proc)
        cpu = loop_cpu_s(proc.pid)
        sent, replied = trio.run(paced, config.parent / "pager.sock", schedule)
        cpu = loop_cpu_s(proc.pid) - cpu
        time.sleep(1.0)
    # The ceiling: the bare group-commit server, the same lines at the same pace, each replied
    # to once committed. What this machine and the stack allow for "received -> durable -> on".
    with ceiling("groupcommit", folder / "latency") as (sock, bare_proc):
        bare_cpu = loop_cpu_s(bare_proc.pid)
        bare = reply_ms(*trio.run(paced, sock, schedule), "ceiling_reply_")
        bare_cpu = loop_cpu_s(bare_proc.pid) - bare_cpu
    sent_alerts: dict[tuple[str, int], float] = {}
    per_service: dict[str, int] = {}
    for i, (_, line) in enumerate(schedule):
        if b'"alert"' in line:
            name = json.loads(line)["service"]
            per_service[name] = per_service.get(name, 0) + 1
            sent_alerts[(name, per_service[name])] = sent[i]
    # Handed to its transport: the time the log transport stamps on a notification as it
    # takes it (to the millisecond). Delivered: the attempt recorded once the transport
    # returned, which for `log` includes its own fsync of the notification log.
    handed = []
    for entry in (config.parent / "state" / "notifications.jsonl").read_text().splitlines():
        record = json.loads(entry)
        incident = parse_incident_id(record["incident"])
        if record["level"] == 1 and incident in sent_alerts:
            handed.append((timestamp(record["time"]) - sent_alerts[incident]) * 1000)
    conn = sqlite3.connect(config.parent / "state" / "pager.db")
    latencies = []
    for service, incident, at in conn.execute(
        "SELECT n.service, n.incident, a.at FROM notifications n JOIN delivery_attempts a"
        " ON a.notification = n.id WHERE a.outcome = 'sent' AND n.level = 1"
    ):
        if (service, incident) in sent_alerts:
            latencies.append((at - sent_alerts[(service, incident)]) * 1000)
    conn.close()
    return {
        "services": services,
        "rate": rate,
        "notifications": len(latencies),
        **spread(handed, "handed_"),
        **spread(latencies),
        **reply_ms(sent, replied, "reply_"),
        **bare,
        # How busy each event keeps the event loop's thread: the rounds wait on it.
        "loop_cpu_us_per_event": cpu / len(schedule) * 1e6,
        "ceiling_loop_cpu_us_per_event": bare_cpu / len(schedule) * 1e6,
    }


def section_memory(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for n in sizes["memory_services"]:
        sub = folder / f"memory-{n}"
        sub.mkdir()
        config = write_config(sub, n)
        with pagerd(config) as proc:
            wait_ready(sub / "pager.sock", proc)
            time.sleep(0.5)
            result[f"idle_{n}_mb"] = rss_mb(proc.pid)
            lines = [alert_line(i, n) for i in range(0, n, 10)]
            trio.run(pipelined, sub / "pager.sock", lines)
            time.sleep(1.0)
            result[f"open10pct_{n}_mb"] = rss_mb(proc.pid)
    return result


def overdue_by_a_minute(_: int) -> float:
    return time.time() - 60


def section_restart(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for n in sizes["restart_incidents"]:
        sub = folder / f"restart-{n}"
        (sub / "state").mkdir(parents=True)
        config = write_config(sub, n)
        prepare_open_incidents(sub / "state" / "pager.db", n, overdue_by_a_minute)
        start = time.monotonic()
        with pagerd(config) as proc:
            ready = wait_ready(sub / "pager.sock", proc, within=120)
            result[f"ping_{n}_s"] = ready
            deadline = time.monotonic() + 300
            while count_level2(sub / "state" / "pager.db") < n and time.monotonic() < deadline:
                time.sleep(0.1)
            result[f"all_overdue_fired_{n}_s"] = time.monotonic() - start
    # The same restart once the database has a storm's history: start-up checks all of it.
    n, events = max(sizes["restart_incidents"]), sizes["restart_history_events"]
    sub = folder / f"restart-{n}-history"
    (sub / "state").mkdir(parents=True)
    config = write_config(sub, n)
    prepare_open_incidents(sub / "state" / "pager.db", n, lambda _: time.time() + 3600)
    prepare_history(sub / "state" / "pager.db", n, events)
    with pagerd(config) as proc:
        result[f"ping_{n}_with_{events}_events_s"] = wait_ready(sub / "pager.sock", proc, 120)
    return result


def prepare_history(db: Path, services: int, events: int) -> None:
    """`events` alerts recorded on the open incidents of `services` services, as pagerd records
    a counted alert (written directly: through `decide` it would take minutes)."""
    conn = sqlite3.connect(db)
    try:
        now = time.time()
        with conn:
            conn.executemany(
                "INSERT INTO events (service, incident, at, op, detail, by, peer_uid, peer_user,"
                " peer_pid) VALUES (?, 1, ?, 'alert', 'load', NULL, 0, 'root', 1)",
                ((f"svc-{i % services}", now + i * 1e-3) for i in range(events)),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def section_timers(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    n, window, lead = sizes["timer_escalations"], sizes["timer_window_s"], sizes["timer_lead_s"]
    sub = folder / "timers"
    (sub / "state").mkdir(parents=True)
    config = write_config(sub, n)
    rng = random.Random(1)
    offsets = [rng.uniform(0, window) for _ in range(n)]
    db = sub / "state" / "pager.db"
    prepare_open_incidents(db, n, lambda i: offsets[i])
    # Preparing 100,000 incidents takes a while: the clock starts only now, `lead` seconds
    # before the first deadline, time enough for pagerd to start.
    base = time.time() + lead
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE incidents SET deadline = deadline + ?", (base,))
    due = {
        (s, num): d for s, num, d in conn.execute("SELECT service, number, deadline FROM incidents")
    }
    conn.close()
    with pagerd(config) as proc:
        wait_ready(sub / "pager.sock", proc, within=120)
        finish = time.monotonic() + lead + window + 120
        while count_level2(db) < n and time.monotonic() < finish:
            time.sleep(0.2)
    conn = sqlite3.connect(db)
    late = [
        (created - due[(service, incident)]) * 1000
        for service, incident, created in conn.execute(
            "SELECT service, incident, created_at FROM notifications WHERE level = 2"
        )
    ]
    conn.close()
    return {
        "escalations": n,
        "fired": len(late),
        **spread(late),
    }


def prepare_closed_history(db: Path, services: int, incidents: int, events: int) -> None:
    """`incidents` closed incidents a service, long ago, each with `events` recorded alerts and
    two notifications delivered once: what `keep_history` finds after a year of storms."""
    conn = sqlite3.connect(db)
    numbers = [(f"svc-{s}", n) for s in range(services) for n in range(1, incidents + 1)]
    try:
        with conn:
            conn.executemany(
                "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
                " exhausted, closed_at) VALUES (?, ?, 0, 'load', 1, 1, 1, 0, ?)",
                ((name, n, 1000.0 + n) for name, n in numbers),
            )
            conn.executemany(
                "INSERT INTO events (service, incident, at, op, detail) VALUES (?, ?, 0, 'alert',"
                " 'load')",
                (key for key in numbers for _ in range(events)),
            )
            ids = [
                (f"{name}#{n}/1/1/email:{k}@example.com", name, n)
                for name, n in numbers
                for k in range(2)
            ]
            conn.executemany(
                "INSERT INTO notifications (id, service, incident, round, level, channel, address,"
                " message, opened_at, created_at, state) VALUES (?, ?, ?, 1, 1, 'email', 'a',"
                " 'load', 0, 0, 'sent')",
                ids,
            )
            conn.executemany(
                "INSERT INTO delivery_attempts (notification, at, outcome) VALUES (?, 0, 'sent')",
                ((nid,) for nid, _, _ in ids),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def section_retention(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    """One `keep_history` pass over a large history, as the daemon runs it (each transaction in
    the writer's thread, a rest as long after it), and how long each transaction holds the one
    writer, which is how long a commit may wait behind it."""
    services, incidents, events = (
        sizes["retention_services"], sizes["retention_incidents"], sizes["retention_events"],
    )  # fmt: skip
    db = folder / "pager.db"
    Store.open(db).close()
    prepare_closed_history(db, services, incidents, events)
    store = Store.open(db)
    held: list[float] = []
    offload = in_thread(trio.CapacityLimiter(1))

    async def timed(fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return await offload(fn)
        finally:
            held.append((time.perf_counter() - started) * 1000)

    try:
        started = time.monotonic()
        pruned = trio.run(retention.prune, store, timed, time.time())
        elapsed = time.monotonic() - started
    finally:
        store.close()
    return {
        "incidents": services * incidents,
        "pruned": pruned,
        "transactions": len(held),
        "pass_s": elapsed,
        **spread(held, "transaction_"),
    }


def section_storm(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    """RSS under a sustained storm: 8 connections pipelining as fast as pagerd takes them. And
    the escalation lateness of quiet services meanwhile: one opens an incident every so often,
    and its level 2 is due QUIET_ACK_TIMEOUT later, storm or not."""
    services, seconds = sizes["storm_services"], sizes["storm_s"]
    (folder / "storm").mkdir()
    quiet = max(1, int((seconds - QUIET_ACK_TIMEOUT - 0.5) / STORM_QUIET_EVERY))
    config = write_config(folder / "storm", services, quiet=quiet)
    samples: list[float] = []

    async def storm(pid: int) -> int:
        sent = 0

        async def flood(k: int) -> None:
            nonlocal sent
            lines = [alert_line(i, services) for i in range(k, k + 2000)]
            while True:
                await pipelined(config.parent / "pager.sock", lines)
                sent += len(lines)

        async def quiet_alerts() -> None:
            for i in range(quiet):
                await trio.sleep(STORM_QUIET_EVERY)
                line = b'{"op":"alert","service":"quiet-%d","message":"quiet"}\n' % i
                await pipelined(config.parent / "pager.sock", [line])

        async with trio.open_nursery() as nursery:
            for k in range(8):
                nursery.start_soon(flood, k * 2000)
            nursery.start_soon(quiet_alerts)
            for _ in range(int(seconds)):
                await trio.sleep(1.0)
                samples.append(rss_mb(pid))
            nursery.cancel_scope.cancel()
        return sent

    db = config.parent / "state" / "pager.db"
    with pagerd(config) as proc:
        wait_ready(config.parent / "pager.sock", proc)
        start = rss_mb(proc.pid)
        events = trio.run(storm, proc.pid)
        finish = time.monotonic() + 60
        while _quiet_escalated(db) < quiet and time.monotonic() < finish:
            time.sleep(0.1)
    return {
        "seconds": seconds,
        "events": events,
        "rss_start_mb": start,
        "rss_min_mb": min(samples),
        "rss_max_mb": max(samples),
        "rss_last_mb": samples[-1],
        "quiet_escalations": quiet,
        **spread(_quiet_lateness(db), "quiet_lateness_"),
    }


STORM_QUIET_EVERY = 0.25  # seconds between two quiet services' alerts during the storm


def _quiet_escalated(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM notifications WHERE level = 2 AND service LIKE 'quiet-%'"
            ).fetchone()[0]
        )
    finally:
        conn.close()


def _quiet_lateness(db: Path) -> list[float]:
    """ms from each quiet service's level-2 deadline (level 1's decision + its ack timeout) to
    its level-2 decision."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT one.created_at, two.created_at FROM notifications one JOIN notifications two"
            " ON two.service = one.service AND two.incident = one.incident"
            " WHERE one.service LIKE 'quiet-%' AND one.level = 1 AND two.level = 2"
        ).fetchall()
    finally:
        conn.close()
    return [(two - (one + QUIET_ACK_TIMEOUT)) * 1000 for one, two in rows]


WINDOWS_EACH = 5  # maintenance windows of each service in the `windows` section


async def timed_requests(sock: Path, line: bytes, count: int) -> list[float]:
    """ms from sending `line` to reading its whole reply, `count` times one after another."""
    stream = await trio.open_unix_socket(str(sock))
    found: list[float] = []
    async with stream:
        for _ in range(count):
            start = time.perf_counter()
            await stream.send_all(line)
            reply = b""
            while not reply.endswith(b"\n"):
                data = await stream.receive_some(1 << 20)
                if not data:
                    raise RuntimeError("connection closed early")
                reply += data
            found.append((time.perf_counter() - start) * 1000)
    return found


def section_windows(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What maintenance windows cost the decision loop: `status` of every service, and a
    pipelined storm of alerts (each reply a service's status, each incident opened asking
    whether a window holds it), with `WINDOWS_EACH` daily windows a service and with none."""
    services, events, statuses = (
        sizes["windows_services"],
        sizes["windows_events"],
        sizes["windows_statuses"],
    )
    lines = [alert_line(i, services) for i in range(events)]
    result: dict[str, Any] = {
        "services": services,
        "windows": services * WINDOWS_EACH,
        "events": events,
    }
    for label, each in (("plain", 0), ("windows", WINDOWS_EACH)):
        (folder / label).mkdir()
        config = write_config(folder / label, services, windows=each)
        sock = config.parent / "pager.sock"
        with pagerd(config) as proc:
            wait_ready(sock, proc)
            ms = trio.run(timed_requests, sock, b'{"op":"status"}\n', statuses)
            result.update(spread(ms, f"{label}_status_"))
            elapsed, ok = trio.run(pipelined, sock, lines)
            result[f"{label}_pipelined"] = ok / elapsed
            result[f"{label}_pipelined_ok"] = ok
    return result


def section_peer(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    return peer.section(sizes, folder, prepare_open_incidents, write_config)


# PostgreSQL (issue 17) ------------------------------------------------------------------
#
# The `postgresql` section: pagerd on PostgreSQL, one node and three, beside the bare
# group-commit writer on the same server (`ceilings.py pggroupcommit`), measured in the same run.
#
# Each part has a database of its own on the server, made fresh (`pagerd migrate` for
# pagerd's) and dropped afterwards: other users of the server are never touched. The server is
# `$PAGERD_BENCH_POSTGRES` (the DSN of a user that may create databases) if set, else the one on
# 127.0.0.1:5432 as user postgres; if none answers, the section says so in capitals and is
# skipped, as the peer section is without Alertmanager.
#
# - The ceiling: the same request lines, pipelined on one connection, and from 1 and 8 clients
#   each waiting for its reply, and the latency run's lines at the same pace, each answered
#   once committed.
# - One node: alert -> transport latency at a steady rate (the `log` transport's stamps, as the
#   `latency` section reads them), pipelined ingest, request/response from 1 and 8 clients.
# - Three nodes on one database: the same pipelined load split across their three sockets (each
#   node takes events for every service; those of services another node owns go through the
#   inbox), then failover: the owner of an incident whose next level is due is killed (`kill
#   -9`, `FAILOVER_LEAD` before the level is due), and the time until a surviving node pages
#   that level is measured, over repeated runs, beside the target `lease_ttl + 2 s`. The killed
#   node is started again and the shards settle back on their preferred owners before the next.


PG_ENV: Final = "PAGERD_BENCH_POSTGRES"
PG_LOCAL: Final = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
NODES: Final = ("bench-a", "bench-b", "bench-c")
FAILOVER_LEAD: Final = 0.05
"""Seconds before the incident's next level is due that its owner is killed: late enough that
the level is due as good as at once, early enough that the owner cannot have paged it."""
SETTLE_WITHIN: Final = 120.0


def pg_server() -> str | None:
    """The admin DSN of the server to measure on, or None if it does not answer."""
    dsn = os.environ.get(PG_ENV) or PG_LOCAL
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return None
    return dsn


@contextlib.contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    """A new, empty database on the server (`pagerd_bench_<random>`): its DSN. Dropped
    afterwards, with any connection still open to it (a node killed mid-transaction)."""
    name = f"pagerd_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


FAILOVER_ACK_TIMEOUT: Final = 0.5
"""Seconds from a failover service's alert to its level 2: time enough to read the incident's
deadline from the database before its owner is killed, and no more (the runs wait for it)."""


def write_node_config(
    folder: Path, dsn: str, node: str, services: int, failover: int, lease_ttl: float
) -> Path:
    """The benchmark's usual config (`write_config`: svc-N on two levels of 15 min), and
    `failover` services failover-N whose level 2 is due `FAILOVER_ACK_TIMEOUT` after their alert,
    on the PostgreSQL database `dsn`, as cluster node `node`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, services)
    lines = [
        "[policies.failover]",
        "[[policies.failover.levels]]",
        'targets = ["email:first@example.com"]',
        f'ack_timeout = "{FAILOVER_ACK_TIMEOUT * 1000:.0f}ms"',
        "[[policies.failover.levels]]",
        'targets = ["email:second@example.com"]',
    ]
    for i in range(failover):
        lines += [f"[services.failover-{i}]", 'policy = "failover"']
    lines += [
        "[storage]",
        'backend = "postgresql"',
        f"dsn = {json.dumps(dsn)}",  # a TOML basic string: JSON's escapes are TOML's
        "[cluster]",
        f'node_name = "{node}"',
        f'lease_ttl = "{lease_ttl:g}s"',
    ]
    with config.open("a") as out:
        out.write("\n".join(lines) + "\n")
    return config


def migrate(config: Path) -> None:
    """`pagerd migrate`: the schema made in the node's (fresh) database."""
    subprocess.run(
        [PYTHON, "-m", "pagerd", "migrate", "--config", str(config)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


class Node:
    """One `pagerd` process of the cluster, which the benchmark may kill and start again."""

    def __init__(self, name: str, config: Path) -> None:
        self.name = name
        self.config = config
        self.sock = config.parent / "pager.sock"
        self.log = config.parent / "state" / "notifications.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.config.parent / "pagerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "pagerd", "--config", str(self.config), "--log-level",
                 "error"],
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )  # fmt: skip

    def ready(self) -> float:
        assert self.proc is not None
        return wait_ready(self.sock, self.proc, within=120)

    def kill(self) -> float:
        """`kill -9`: the wall-clock time it was sent."""
        assert self.proc is not None
        at = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        return at

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def running(nodes: Sequence[Node]) -> Iterator[None]:
    """`nodes` started together (their start-ups overlap), each answering; stopped after."""
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.ready()
        yield
    finally:
        for node in nodes:
            node.stop()


def pg_wait_delivered(dsn: str, within: float = 300.0) -> None:
    """Until no notification in the database is left to deliver."""
    deadline = time.monotonic() + within
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM notifications WHERE state <> 'sent'")
            if row.fetchone() == (0,):
                return
            time.sleep(0.1)
    raise RuntimeError(f"notifications still undelivered after {within}s")


def wait_settled(dsn: str, nodes: Sequence[str], within: float = SETTLE_WITHIN) -> float:
    """Seconds until every shard is leased, unexpired, to its preferred node among `nodes`: the
    cluster at rest, no handover under way."""
    want = {shard: preferred(shard, nodes) for shard in range(SHARDS)}
    start = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() - start < within:
            held: dict[int, str | None] = dict(
                conn.execute(
                    "SELECT shard, owner FROM leases WHERE expires_at > clock_timestamp()"
                ).fetchall()
            )
            if held == want:
                return time.monotonic() - start
            time.sleep(0.05)
    raise RuntimeError(f"the cluster's leases did not settle within {within}s")


def owner(dsn: str, service: str) -> str | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT owner FROM leases WHERE shard = %s AND expires_at > clock_timestamp()",
            (shard_of(service),),
        ).fetchone()
    return None if row is None else row[0]


def open_deadline(dsn: str, service: str) -> float | None:
    """When the open incident of `service` is due to escalate (wall-clock seconds)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT deadline FROM incidents WHERE service = %s AND closed_at IS NULL",
            (service,),
        ).fetchone()
    return None if row is None else row[0]


def log_records(path: Path) -> list[dict[str, Any]]:
    """The `log` transport's records (none if the node logged nothing yet); a line cut short by
    a kill is left out."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def paged(nodes: Sequence[Node], service: str, level: int) -> list[tuple[str, float]]:
    """Each node's `log` records of `service`'s pages at `level`: (node, stamp)."""
    return [
        (node.name, timestamp(record["time"]))
        for node in nodes
        for record in log_records(node.log)
        if record["service"] == service and record["level"] == level
    ]


# The load ---------------------------------------------------------------------------------


def paced_schedule(services: int, rate: int, seconds: float) -> list[tuple[float, bytes]]:
    """As the `latency` section's: at `rate` events a second, a service's alert and, half a
    second later, its healthy: every alert opens an incident and pages."""
    schedule: list[tuple[float, bytes]] = []
    for k in range(int(rate * seconds) // 2):
        at = k * 2 / rate
        name = f"svc-{k % services}".encode()
        schedule.append((at, b'{"op":"alert","service":"%s"}\n' % name))
        schedule.append((at + 0.5, b'{"op":"healthy","service":"%s"}\n' % name))
    schedule.sort(key=lambda item: item[0])
    return schedule


def handed_ms(
    schedule: Sequence[tuple[float, bytes]], sent: Sequence[float], logs: Sequence[Path]
) -> list[float]:
    """ms from sending each alert of `schedule` to its level-1 page's stamp in `logs`."""
    sent_alerts: dict[tuple[str, int], float] = {}
    per_service: dict[str, int] = {}
    for i, (_, line) in enumerate(schedule):
        if b'"alert"' in line and i < len(sent):
            name = json.loads(line)["service"]
            per_service[name] = per_service.get(name, 0) + 1
            sent_alerts[(name, per_service[name])] = sent[i]
    handed = []
    for path in logs:
        for record in log_records(path):
            incident = parse_incident_id(record["incident"])
            if record["level"] == 1 and incident in sent_alerts:
                handed.append((timestamp(record["time"]) - sent_alerts[incident]) * 1000)
    return handed


CLUSTER_WINDOW: Final = 1024
"""Requests a client keeps in flight on one connection to a node of the cluster: under the 4096
events a node lets wait for their owners before it answers `busy`, as a client that reads its
replies would keep it."""


async def pipelined_split(
    socks: Sequence[Path], lines: list[bytes], window: int | None = None
) -> tuple[float, int, int]:
    """`lines` dealt round-robin to `socks`, each share pipelined on its own connection at the
    same time (at most `window` in flight on each): (seconds until the last reply, replies ok,
    replies busy)."""
    results: list[tuple[float, int, int]] = []

    async def one(sock: Path, share: list[bytes]) -> None:
        results.append(await pipelined_counted(sock, share, window))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for k, sock in enumerate(socks):
            nursery.start_soon(one, sock, lines[k :: len(socks)])
    return (
        trio.current_time() - start,
        sum(ok for _, ok, _ in results),
        sum(busy for _, _, busy in results),
    )


async def pipelined_counted(
    sock: Path, lines: list[bytes], window: int | None = None
) -> tuple[float, int, int]:
    """`pipelined` (with at most `window` requests in flight, if given), counting the replies
    `busy` too: (seconds, replies ok, replies busy)."""
    stream = await trio.open_unix_socket(str(sock))
    ok = busy = seen = 0
    chunk = 512 if window is None else min(512, max(1, window // 4))
    room = len(lines) if window is None else window
    progress = trio.Event()
    start = trio.current_time()

    async def write() -> None:
        nonlocal progress
        sent = 0
        while sent < len(lines):
            while sent - seen + chunk > room:
                await progress.wait()
                progress = trio.Event()
            part = lines[sent : sent + chunk]
            await stream.send_all(b"".join(part))
            sent += len(part)

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(write)
        rest = b""
        while seen < len(lines):
            data = await stream.receive_some(1 << 20)
            if not data:
                raise RuntimeError("connection closed early")
            chunks = (rest + data).split(b"\n")
            rest = chunks.pop()
            seen += len(chunks)
            ok += sum(1 for c in chunks if c.startswith(b'{"ok":true'))
            busy += sum(1 for c in chunks if b'"busy"' in c)
            progress.set()
    return trio.current_time() - start, ok, busy


# The section ------------------------------------------------------------------------------


def section_postgresql(sizes: dict[str, Any], folder: Path) -> dict[str, Any]:
    admin = pg_server()
    if admin is None:
        where = f"${PG_ENV}" if os.environ.get(PG_ENV) else "127.0.0.1:5432"
        print(
            f"[postgresql] NO POSTGRESQL AT {where}: THE POSTGRESQL SECTION DID NOT RUN",
            file=sys.stderr,
        )
        return {"skipped": f"no PostgreSQL at {where}"}
    with psycopg.connect(admin, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        commit = conn.execute("SHOW synchronous_commit").fetchone()
    result: dict[str, Any] = {
        "server_version": "?" if version is None else str(version[0]).split()[0],
        "synchronous_commit": None if commit is None else commit[0],
    }
    services, events = sizes["ingest_services"], sizes["ingest_events"]
    lines = [alert_line(i, services) for i in range(events)]
    schedule = paced_schedule(services, sizes["pg_latency_rate"], sizes["pg_latency_s"])
    result.update(services=services, events=events, rate=sizes["pg_latency_rate"])
    with _phase("ceiling"), fresh_database(admin) as dsn:
        result.update(_ceiling(sizes, folder, dsn, lines, schedule))
    runs, ttl = sizes["pg_failover_runs"], sizes["pg_lease_ttl"]
    result.update(lease_ttl_s=ttl, failover_target_s=ttl + 2.0)
    with fresh_database(admin) as dsn:
        # Services enough that each failover run finds one owned by the node it kills.
        nodes = [
            Node(name, write_node_config(folder / name, dsn, name, services, 12 * runs, ttl))
            for name in NODES
        ]
        migrate(nodes[0].config)
        with running(nodes[:1]):
            with _phase("one node"):
                result.update(_one_node(sizes, dsn, nodes[0], lines, schedule))
            # The others join it: the same database, its incidents still open.
            with _phase("three nodes"), running(nodes[1:]):
                result.update(_three_nodes(sizes, dsn, nodes, lines[: sizes["pg_three_events"]]))
    return result


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """How long a part of the section took, on stderr beside the sections' own times."""
    started = time.monotonic()
    try:
        yield
    finally:
        print(f"[postgresql] {name}: {time.monotonic() - started:.1f}s", file=sys.stderr)


@contextlib.contextmanager
def _pg_ceiling(folder: Path, dsn: str) -> Iterator[Path]:
    sock = folder / "pggroupcommit.sock"
    args = [PYTHON, str(ROOT / "bench" / "ceilings.py"), "pggroupcommit", str(sock)]
    proc = subprocess.Popen([*args, dsn], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(sock, proc)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ceiling(
    sizes: dict[str, Any],
    folder: Path,
    dsn: str,
    lines: list[bytes],
    schedule: list[tuple[float, bytes]],
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    services, seconds = sizes["ingest_services"], sizes["reqresp"]
    with _pg_ceiling(folder, dsn) as sock:
        rates = []
        for _ in range(sizes["pg_ceiling_passes"]):
            elapsed, ok = trio.run(pipelined, sock, lines)
            rates.append(ok / elapsed)
        result["ceiling_pipelined"] = statistics.median(rates)
        result["ceiling_pipelined_runs"] = rates
        for n in REQRESP_CLIENTS:
            rate = trio.run(request_response, sock, n, seconds, lambda i: alert_line(i, services))
            result[f"ceiling_reqresp_{n}"] = rate
        result.update(reply_ms(*trio.run(paced, sock, schedule), "ceiling_reply_"))
    return result


REQRESP_CLIENTS: Final = (1, 8)


def _one_node(
    sizes: dict[str, Any],
    dsn: str,
    node: Node,
    lines: list[bytes],
    schedule: list[tuple[float, bytes]],
) -> dict[str, Any]:
    services, seconds = sizes["ingest_services"], sizes["reqresp"]
    result: dict[str, Any] = {}
    wait_settled(dsn, [node.name])
    # Latency first, on services with no incident yet: every alert opens one and pages.
    sent, replied = trio.run(paced, node.sock, schedule)
    result.update(reply_ms(sent, replied, "reply_"))
    pg_wait_delivered(dsn)
    handed = handed_ms(schedule, sent, [node.log])
    result.update(spread(handed, "handed_"), latency_notifications=len(handed))
    before = commit_figures(node.sock)
    elapsed, ok, busy = trio.run(pipelined_counted, node.sock, lines)
    after = commit_figures(node.sock)
    result.update(pipelined=ok / elapsed, pipelined_ok=ok, pipelined_busy=busy)
    # Whether group commit groups: the commits the pipelined alerts took, their writes each.
    commits = after["commits"] - before["commits"]
    result.update(
        pipelined_commits=int(commits),
        pipelined_writes_a_commit=(after["writes"] - before["writes"]) / max(commits, 1),
        pipelined_commit_ms=1000 * (after["seconds"] - before["seconds"]) / max(commits, 1),
    )
    pg_wait_delivered(dsn)  # the storm's pages: measure the next on a quiet node
    for n in REQRESP_CLIENTS:
        result[f"reqresp_{n}"] = trio.run(
            request_response, node.sock, n, seconds, lambda i: alert_line(i, services)
        )
    return result


def _three_nodes(
    sizes: dict[str, Any], dsn: str, nodes: list[Node], lines: list[bytes]
) -> dict[str, Any]:
    result: dict[str, Any] = {"settle_s": wait_settled(dsn, NODES)}
    with _phase("three nodes: ingest"):
        elapsed, ok, busy = trio.run(
            pipelined_split, [n.sock for n in nodes], lines, CLUSTER_WINDOW
        )
        pg_wait_delivered(dsn)
    result.update(
        three_events=len(lines),
        three_pipelined=ok / elapsed,
        three_pipelined_ok=ok,
        three_pipelined_busy=busy,
    )
    with _phase("three nodes: failover"):
        runs = sizes["pg_failover_runs"]
        result.update(_failovers(dsn, nodes, runs, 12 * runs, sizes["pg_lease_ttl"]))
    return result


def _failovers(
    dsn: str, nodes: list[Node], runs: int, candidates: int, ttl: float
) -> dict[str, Any]:
    """`runs` times: kill -9 the owner of an incident about to escalate, time the page of its
    next level by a surviving node, start the killed node again, let the shards settle."""
    times: list[float] = []
    unused = [f"failover-{i}" for i in range(candidates)]
    missed = early = 0
    for run in range(runs):
        victim = nodes[run % len(nodes)]
        service = next(s for s in unused if owner(dsn, s) == victim.name)
        unused.remove(service)
        reply = trio.run(
            _request, victim.sock, b'{"op":"alert","service":"%s"}\n' % service.encode()
        )
        if not reply.startswith(b'{"ok":true'):
            raise RuntimeError(f"alert of {service} answered {reply[:200]!r}")
        due = open_deadline(dsn, service)
        if due is None:
            raise RuntimeError(f"no open incident of {service} after its alert was answered")
        time.sleep(max(0.0, due - FAILOVER_LEAD - time.time()))
        killed = victim.kill()
        survivors = [n for n in nodes if n is not victim]
        finish = time.monotonic() + ttl + 60
        found: list[tuple[str, float]] = []
        while not found and time.monotonic() < finish:
            time.sleep(0.02)
            found = paged(survivors, service, 2)
        if paged([victim], service, 2):
            early += 1  # the owner paged it before it died: not a failover, not counted
        elif found:
            times.append(min(at for _, at in found) - killed)
        else:
            missed += 1
        victim.start()
        victim.ready()
        wait_settled(dsn, [n.name for n in nodes])
    doubles = sum(
        1 for i in range(candidates) if len({at for _, at in paged(nodes, f"failover-{i}", 2)}) > 1
    )
    return {
        "failover_runs": runs,
        "failover_measured": len(times),
        "failover_missed": missed,
        "failover_owner_paged_first": early,
        "failover_paged_twice": doubles,
        "failover_runs_s": times,
        "failover_p50_s": percentile(times, 50),
        "failover_p99_s": percentile(times, 99),
        "failover_max_s": max(times, default=math.nan),
    }


def commit_figures(sock: Path) -> dict[str, float]:
    """The node's group commits so far, from its metrics (`{"op":"metrics"}`): how many, the
    writes they carried, and the seconds they took, in all."""
    reply = json.loads(trio.run(_request, sock, b'{"op":"metrics"}\n'))
    found = {}
    for line in reply["text"].splitlines():
        name, _, value = line.partition(" ")
        found[name] = value
    return {
        "commits": float(found["pagerd_store_commit_batch_size_count"]),
        "writes": float(found["pagerd_store_commit_batch_size_sum"]),
        "seconds": float(found["pagerd_store_commit_seconds_sum"]),
    }


async def _request(sock: Path, line: bytes) -> bytes:
    stream = await trio.open_unix_socket(str(sock))
    async with stream:
        await stream.send_all(line)
        reply = b""
        while not reply.endswith(b"\n"):
            data = await stream.receive_some(65536)
            if not data:
                break
            reply += data
    return reply


# The table --------------------------------------------------------------------------------

Row = tuple[str, str, str, str, str]


def postgresql_rows(pg: dict[str, Any]) -> list[Row]:
    """The section's rows of the table: each figure beside its ceiling and their ratio."""
    if "skipped" in pg:
        return [(f"PostgreSQL: {pg['skipped'].upper()}: NOT MEASURED", "", "", "", "")]
    ceiling = pg["ceiling_pipelined"]
    found: list[Row] = [
        (
            f"PostgreSQL {pg['server_version']}, one node: pipelined alerts/s "
            f"({pg['services']} services)",
            f"{pg['pipelined']:,.0f}",
            f"{ceiling:,.0f}",
            f"{pg['pipelined'] / ceiling:.0%}",
            "",
        ),
        (
            "PostgreSQL, one node: pipelined, commits / writes a commit / ms a commit",
            f"{pg['pipelined_commits']:,} / {pg['pipelined_writes_a_commit']:.0f}"
            f" / {pg['pipelined_commit_ms']:.1f}",
            "",
            "",
            "",
        ),
        (
            f"PostgreSQL, three nodes: pipelined alerts/s, {pg['three_events']} split over their"
            f" sockets ({CLUSTER_WINDOW} in flight each"
            + (f", {pg['three_pipelined_busy']} busy)" if pg["three_pipelined_busy"] else ")"),
            f"{pg['three_pipelined']:,.0f}",
            f"{ceiling:,.0f}",
            f"{pg['three_pipelined'] / ceiling:.0%}",
            "",
        ),
    ]
    for n in REQRESP_CLIENTS:
        found.append(
            (
                f"PostgreSQL, one node: request/response/s, {n} connections",
                f"{pg[f'reqresp_{n}']:,.0f}",
                f"{pg[f'ceiling_reqresp_{n}']:,.0f}",
                f"{pg[f'reqresp_{n}'] / pg[f'ceiling_reqresp_{n}']:.0%}",
                "",
            )
        )
    bare = _ms(pg, "ceiling_reply_")
    for label, prefix in (("alert->transport", "handed_"), ("event->reply", "reply_")):
        found.append(
            (
                f"PostgreSQL, one node: {label} ms p50/p99/max @ {pg['rate']}/s",
                _ms(pg, prefix),
                bare,
                f"{pg['ceiling_reply_p99_ms'] / pg[prefix + 'p99_ms']:.0%}",
                "",
            )
        )
    measured = pg["failover_measured"]
    note = ""
    if measured != pg["failover_runs"]:
        note = f", {pg['failover_missed']} never paged, {pg['failover_owner_paged_first']} early"
    found.append(
        (
            f"PostgreSQL, three nodes: failover s p50/p99/max ({measured} runs{note}, "
            f"lease_ttl {pg['lease_ttl_s']:g}s)",
            " / ".join(f"{pg[f'failover_{p}_s']:.2f}" for p in ("p50", "p99", "max")),
            "",
            "",
            f"< {pg['failover_target_s']:g}",
        )
    )
    return found


SIZES = {
    "full": {
        "peer_rate_s": 5.0,
        "peer_pool": 1_000,
        "peer_first_page_rate": 200,
        "peer_first_page_s": 10.0,
        "peer_incidents": 10_000,
        "peer_open": [10_000, 100_000],
        "peer_idle_s": 5.0,
        "peer_quiet_s": 3.0,
        "ingest_services": 10_000,
        "ingest_events": 50_000,
        "reqresp": 5.0,
        "latency_services": 10_000,
        "latency_rate": 1000,
        "latency_s": 10.0,
        "memory_services": [1_000, 10_000, 100_000],
        "restart_incidents": [10_000, 100_000],
        "restart_history_events": 2_000_000,
        "timer_escalations": 100_000,
        "timer_window_s": 60.0,
        "timer_lead_s": 15.0,
        "storm_services": 10_000,
        "storm_s": 30.0,
        "retention_services": 10_000,
        "retention_incidents": 5,
        "retention_events": 20,
        "windows_services": 500,
        "windows_events": 20_000,
        "windows_statuses": 100,
        "pg_ceiling_passes": 5,
        "pg_latency_rate": 1000,
        "pg_latency_s": 10.0,
        "pg_three_events": 20_000,
        "pg_lease_ttl": 10.0,
        "pg_failover_runs": 20,
    },
    "quick": {
        "peer_rate_s": 0.3,
        "peer_pool": 100,
        "peer_first_page_rate": 200,
        "peer_first_page_s": 0.5,
        "peer_incidents": 200,
        "peer_open": [200],
        "peer_idle_s": 0.5,
        "peer_quiet_s": 0.5,
        "ingest_services": 200,
        "ingest_events": 2_000,
        "reqresp": 0.5,
        "latency_services": 200,
        "latency_rate": 200,
        "latency_s": 1.0,
        "memory_services": [100],
        "restart_incidents": [500],
        "restart_history_events": 2_000,
        "timer_escalations": 300,
        "timer_window_s": 2.0,
        "timer_lead_s": 3.0,
        "storm_services": 200,
        "storm_s": 2.0,
        "retention_services": 50,
        "retention_incidents": 3,
        "retention_events": 5,
        "windows_services": 50,
        "windows_events": 1_000,
        "windows_statuses": 10,
        "pg_ceiling_passes": 1,
        "pg_latency_rate": 200,
        "pg_latency_s": 1.0,
        "pg_three_events": 300,
        "pg_lease_ttl": 2.0,
        "pg_failover_runs": 3,
    },
}

SECTIONS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "ingest": section_ingest,
    "latency": section_latency,
    "memory": section_memory,
    "restart": section_restart,
    "timers": section_timers,
    "storm": section_storm,
    "retention": section_retention,
    "windows": section_windows,
    "peer": section_peer,
    "postgresql": section_postgresql,
}


def _ms(figures: dict[str, Any], prefix: str) -> str:
    return " / ".join(f"{figures[f'{prefix}{p}_ms']:.1f}" for p in ("p50", "p99", "max"))


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [("measure", "pagerd", "ceiling", "ratio", "target")]
    ingest = results.get("ingest")
    if ingest:
        rows.append(
            (
                f"pipelined alerts/s ({ingest['services']} services)",
                f"{ingest['pipelined']:,.0f}",
                f"{ingest['ceiling_pipelined']:,.0f}",
                f"{ingest['pipelined'] / ingest['ceiling_pipelined']:.0%}",
                ">= 50%",
            )
        )
        for n in (1, 8, 64):
            rows.append(
                (
                    f"request/response/s, {n} connections",
                    f"{ingest[f'reqresp_{n}']:,.0f}",
                    f"{ingest[f'ceiling_reqresp_{n}']:,.0f}",
                    f"{ingest[f'reqresp_{n}'] / ingest[f'ceiling_reqresp_{n}']:.0%}",
                    ">= 50%" if n == 64 else "",
                )
            )
        loop = [f"{ingest['pipelined_loop_us']:.0f}"]
        loop += [f"{ingest[f'reqresp_{n}_loop_us']:.0f}" for n in (1, 8, 64)]
        rows.append(
            (
                "decision loop CPU us an event, socket: pipelined / 1 / 8 / 64 connections",
                " / ".join(loop),
                "",
                "",
                "",
            )
        )
    latency = results.get("latency")
    if latency:
        bare = _ms(latency, "ceiling_reply_")
        for label, prefix, target in (
            ("alert->transport", "handed_", "p99 < 5"),
            ("event->reply", "reply_", ""),
        ):
            rows.append(
                (
                    f"{label} ms p50/p99/max @ {latency['rate']}/s",
                    _ms(latency, prefix),
                    bare,
                    f"{latency['ceiling_reply_p99_ms'] / latency[prefix + 'p99_ms']:.0%}",
                    target,
                )
            )
        rows.append(
            (
                f"loop thread CPU us an event @ {latency['rate']}/s",
                f"{latency['loop_cpu_us_per_event']:.0f}",
                f"{latency['ceiling_loop_cpu_us_per_event']:.0f}",
                "",
                "",
            )
        )
        rows.append(
            (
                f"alert->delivered+recorded ms p50/p99/max @ {latency['rate']}/s",
                _ms(latency, ""),
                "",
                "",
                "",
            )
        )
    memory = results.get("memory")
    if memory:
        for key, value in memory.items():
            target = "< 150" if key == "idle_100000_mb" else ""
            rows.append((f"RSS MB, {key[:-3].replace('_', ' ')}", f"{value:.0f}", "", "", target))
    restart = results.get("restart")
    if restart:
        for key, value in restart.items():
            target = "< 3" if key == "ping_100000_s" else ""
            rows.append(
                (f"restart s, {key[:-2].replace('_', ' ')}", f"{value:.2f}", "", "", target)
            )
    timers = results.get("timers")
    if timers:
        rows.append(
            (
                f"timer lateness ms p50/p99/max ({timers['fired']}/{timers['escalations']})",
                _ms(timers, ""),
                "",
                "",
                "p99 < 100",
            )
        )
    storm = results.get("storm")
    if storm:
        rows.append(
            (
                f"RSS MB in a {storm['seconds']:.0f}s storm: start/min/max/last",
                f"{storm['rss_start_mb']:.0f} / {storm['rss_min_mb']:.0f} / "
                f"{storm['rss_max_mb']:.0f} / {storm['rss_last_mb']:.0f}",
                "",
                "",
                "flat",
            )
        )
        rows.append(
            (
                "escalation lateness of a quiet service during a storm ms p50/p99/max "
                f"({storm['quiet_escalations']})",
                _ms(storm, "quiet_lateness_"),
                "",
                "",
                "p99 < 100",
            )
        )
    windows = results.get("windows")
    if windows:
        rows.append(
            (
                f"status of {windows['services']} services ms p50/p99/max: "
                f"{windows['windows']} maintenance windows / none",
                _ms(windows, "windows_status_"),
                _ms(windows, "plain_status_"),
                f"{windows['plain_status_p50_ms'] / windows['windows_status_p50_ms']:.0%}",
                "",
            )
        )
        rows.append(
            (
                f"pipelined alerts/s, {windows['services']} services: "
                f"{windows['windows']} maintenance windows / none",
                f"{windows['windows_pipelined']:,.0f}",
                f"{windows['plain_pipelined']:,.0f}",
                f"{windows['windows_pipelined'] / windows['plain_pipelined']:.0%}",
                ">= 80%",
            )
        )
    kept = results.get("retention")
    if kept:
        rows.append(
            (
                f"keep_history pass s ({kept['pruned']} of {kept['incidents']} incidents pruned)",
                f"{kept['pass_s']:.1f}",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                f"  writer held per transaction ms p50/p99/max ({kept['transactions']})",
                _ms(kept, "transaction_"),
                "",
                "",
                "",
            )
        )
    pg = results.get("postgresql")
    if pg:
        rows += postgresql_rows(pg)
    return align(rows)


def align(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="these sections")
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pagerd-bench-") as tmp:
        for name in args.only or list(SECTIONS):
            folder = Path(tmp) / name
            folder.mkdir()
            started = time.monotonic()
            results[name] = SECTIONS[name](sizes, folder)
            print(f"[{name}] {time.monotonic() - started:.1f}s", file=sys.stderr)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mode": "quick" if args.quick else "full",
    }
    if args.json is not None:  # before the table, so a figure is never lost to its printing
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(
        f"pagerd benchmark, {machine['mode']} run: {machine['cpus']} CPUs, "
        f"Python {machine['python']}, {machine['platform']}"
    )
    if set(results) - {"peer"}:
        print(table(results))
    if "peer" in results:
        print()
        print(align(peer.rows(results["peer"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
