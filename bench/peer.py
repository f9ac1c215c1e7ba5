"""The `peer` section: pagerd's HTTP endpoints next to Debian's Prometheus Alertmanager 0.25, with
the same load generator (`httpload.py`), the same alerts, the same webhook receiver
(`receiver.py`) and the same machine, in one run, one system after the other for each figure.

- Alertmanager: `POST /api/v2/alerts`, routed `group_by: [service]` (each service its own group,
  so each alert its own notification) with `group_wait: 0s` (its first notification as soon as
  the group exists; the default 30s would make the first-page figure its own setting),
  `group_interval: 5m` and `repeat_interval: 4h` (its defaults), to a `webhook_configs` receiver.
- pagerd: REST `POST /alert` and the Alertmanager receiver `POST /v1/integrations/alertmanager/KEY`
  (one webhook payload, version 4, per request, with 1 or 100 alerts), each service a one-level
  policy paging a `webhook:` target at the same receiver (channel `concurrency` 64, no rate
  limit), durable (`synchronous=FULL`).
- pagerd twice for the rates and first pages: with its front processes (`http.workers` left to
  its default, one a core: the keys without a prefix) and with HTTP in its core's own process
  (`workers = 0`: the keys prefixed `w0_`). The rest (delivery, kill -9, open incidents) runs
  with the default.
- The decision loop's budget: CPU of the core's main thread (the one that routes, decides,
  commits, replies and hands pages to the outbox; `/proc/PID/task/PID/stat`) over a run, a
  request (or, batched, an alert): `..._loop_us`. With front processes, HTTP is parsed
  elsewhere and this is what remains; in-process it includes hypercorn's work.
- Ceilings in the same run: the HTTP front alone (`ceilings.py http200`: pagerd's `HttpServer`,
  hypercorn inside pagerd's accept loop, answering a fixed 200) and the generator alone (against
  the receiver's bare Trio sink), with the generator's own CPU a request.

Without the Alertmanager binary the section says so (`alertmanager: null`) and measures pagerd
alone. A measurement, never a test: nothing here fails on a figure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import attrs
import httpload
import trio

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
PYTHON: Final = sys.executable
KEY: Final = "bench-key-5f1c9e0a7b3d"
BATCH: Final = 100
CONNECTIONS: Final = 64
AM_NAMES: Final = ("prometheus-alertmanager", "alertmanager")
AM_CONFIG: Final = """\
route:
  receiver: bench
  group_by: [service]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: bench
    webhook_configs:
      - url: "http://127.0.0.1:{port}/am"
        send_resolved: false
"""

Prepare = Callable[[Path, int, Callable[[int], float]], None]
WriteConfig = Callable[[Path, int], Path]


def find_alertmanager() -> str | None:
    override = os.environ.get("PAGERD_ALERTMANAGER")
    for name in ([override] if override else []) + list(AM_NAMES):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


# Payloads -----------------------------------------------------------------------------------


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _am_alert(service: str) -> dict[str, Any]:
    """One alert as Prometheus posts it: firing, ending in an hour unless posted again."""
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": "bench", "service": service},
        "annotations": {"summary": "load"},
        "startsAt": _iso(now - timedelta(minutes=1)),
        "endsAt": _iso(now + timedelta(hours=1)),
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
    }


def _webhook(services: Sequence[str]) -> dict[str, Any]:
    """The same alerts as Alertmanager's webhook payload (version 4) carries them."""
    alerts = []
    for service in services:
        alert = _am_alert(service)
        alert["status"] = "firing"
        alert["endsAt"] = "0001-01-01T00:00:00Z"
        alert["fingerprint"] = hashlib.sha256(service.encode()).hexdigest()[:16]
        alerts.append(alert)
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "pagerd",
        "groupLabels": {},
        "commonLabels": {"alertname": "bench"},
        "commonAnnotations": {"summary": "load"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@attrs.frozen
class Endpoint:
    """How one system takes alerts: `encode(services)` is one request carrying them (REST: one
    service only)."""

    name: str
    port: int
    batches: bool

    def encode(self, services: Sequence[str]) -> bytes:
        if self.name == "am":
            return httpload.request(
                "POST", "/api/v2/alerts", _json([_am_alert(s) for s in services])
            )
        if self.name == "amrcv":
            path = f"/v1/integrations/alertmanager/{KEY}"
            return httpload.request("POST", path, _json(_webhook(services)))
        assert len(services) == 1
        body = _json({"service": services[0], "message": "load"})
        return httpload.request("POST", "/alert", body, {"authorization": f"Bearer {KEY}"})

    def singles(self, services: Sequence[str]) -> list[bytes]:
        return [self.encode([s]) for s in services]

    def batched(self, services: Sequence[str]) -> list[bytes]:
        return [self.encode(services[i : i + BATCH]) for i in range(0, len(services), BATCH)]

    def fill(self, services: Sequence[str]) -> list[bytes]:
        """Every service's alert, in batches where this endpoint takes them."""
        return self.batched(services) if self.batches else self.singles(services)


def names(start: int, count: int) -> list[str]:
    return [f"svc-{i}" for i in range(start, start + count)]


# Processes ----------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def announced(args: list[str]) -> Iterator[tuple[int, int]]:
    """A helper process that prints its port first: (the port, its pid)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline()), proc.pid
    finally:
        _stop(proc)


def http_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        body: bytes = response.read()
        return body


def wait_http_ready(port: int, proc: subprocess.Popen[bytes], within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready")
        try:
            http_get(port, "/-/ready")
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} not ready within {within}s")


@attrs.define
class System:
    """One running Alertmanager or pagerd, started again on the same storage after a kill -9."""

    kind: str
    args: list[str]
    port: int
    log: IO[bytes]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log, cwd=ROOT)
        wait_http_ready(self.port, self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """kill -9, and wait for the children it leaves (pagerd's fronts and delivery workers
        see their channel close and exit): until then a front holds the listening port, and
        the system started again could not bind it."""
        assert self.proc is not None
        left = children(self.pid) + children(self.pid, WORKERS)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in left):
            if time.monotonic() > deadline:
                raise RuntimeError(f"children of the killed {self.kind} still running: {left}")
            time.sleep(0.01)

    def endpoints(self) -> list[Endpoint]:
        if self.kind == "am":
            return [Endpoint("am", self.port, batches=True)]
        return [Endpoint("rest", self.port, False), Endpoint("amrcv", self.port, True)]


@contextmanager
def alertmanager(binary: str, folder: Path, receiver: int) -> Iterator[System]:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "alertmanager.yml"
    config.write_text(AM_CONFIG.format(port=receiver))
    port = free_port()
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # one Alertmanager, no gossip
        "--log.level=warn",
    ]
    with (folder / "alertmanager.log").open("ab") as log:
        system = System("am", args, port, log)
        try:
            system.start()
            yield system
        finally:
            if system.proc is not None:
                _stop(system.proc)


PAGERD_HTTP: Final = """
[http]
listen = "127.0.0.1:{port}"
rate_limit = "1000000/s"
burst = 1000000
max_connections = 1024
{workers}

[integrations.bench-rest]
type = "rest"
key_file = "bench.key"

[integrations.bench-am]
type = "alertmanager"
key_file = "bench.key"
service_label = "service"
"""


def pagerd_config(folder: Path, services: int, receiver: int, workers: int | None = None) -> Path:
    """`services` services svc-N, each paging the receiver's /pagerd through a webhook; sent by
    `workers` delivery worker processes (None: the default, one a core; 0: by the daemon)."""
    lines = [
        "[daemon]",
        'socket = "pager.sock"',
        'state_dir = "state"',
        *([] if workers is None else ["[delivery]", f"workers = {workers}"]),
        "[channels.webhook]",
        'transport = "webhook"',
        "concurrency = 64",
        'rate_limit = "1000000/s"',
        "burst = 10000",
        "[policies.page]",
        "[[policies.page.levels]]",
        f'targets = ["webhook:http://127.0.0.1:{receiver}/pagerd"]',
        'ack_timeout = "1h"',
    ]
    lines += [f'[services.svc-{i}]\npolicy = "page"' for i in range(services)]
    path = folder / "pager.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def pagerd(config: Path, workers: int | None = None) -> Iterator[System]:
    """pagerd on `config`, with the HTTP front and both integrations added to it; `workers`
    front processes (None: its default, one a core; 0: HTTP in the core's own process)."""
    port = free_port()
    with config.open("a") as out:
        lines = "" if workers is None else f"workers = {workers}"
        out.write(PAGERD_HTTP.format(port=port, workers=lines))
    (config.parent / "bench.key").write_text(KEY + "\n")
    args = [PYTHON, "-m", "pagerd", "--config", str(config), "--log-level", "error"]
    with (config.parent / "pagerd.log").open("ab") as log:
        system = System("pagerd", args, port, log)
        try:
            system.start()
            yield system
        finally:
            if system.proc is not None:
                _stop(system.proc)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) of every thread of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_cpu_s(pid: int) -> float:
    """CPU seconds of the process's main thread: pagerd's decision loop (its database writes
    and reads run in other threads; its front processes are other processes)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FRONTS: Final = "pagerd.front.http.process"
WORKERS: Final = "pagerd.delivery.workers"


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie, never reaped where PID 1 does not, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int, module: str = FRONTS) -> list[int]:
    """The process's children running `module` (`python -m MODULE`): its front processes, or
    its delivery workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] != str(pid):
                continue
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in command:
            found.append(int(stat.parent.name))
    return found


def children_rss_mb(pid: int, module: str = FRONTS) -> float:
    total = 0.0
    for child in children(pid, module):
        try:
            total += rss_mb(child)
        except OSError:
            continue
    return total


def children_cpu_s(pid: int, module: str = WORKERS) -> float:
    """CPU seconds of the process's running children of `module` (its delivery workers)."""
    return _cpu_of(children(pid, module))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# The receiver -------------------------------------------------------------------------------


class Pages:
    """What the receiver has been sent, asked over HTTP."""

    def __init__(self, port: int) -> None:
        self.port = port

    def reset(self) -> None:
        http_get(self.port, "/reset")

    def count(self) -> int:
        return int(http_get(self.port, "/count"))

    def repeats(self) -> int:
        """POSTs since the reset whose Idempotency-Key had been received before."""
        return int(http_get(self.port, "/repeats"))

    def first_arrivals(self) -> dict[str, float]:
        """Each paged service's first page's arrival (wall clock)."""
        first: dict[str, float] = {}
        for at, _, services in json.loads(http_get(self.port, "/records")):
            for service in services:
                first.setdefault(service, at)
        return first

    def wait(self, count: int, within: float) -> float | None:
        """Seconds until `count` pages have arrived (None if not within `within`)."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            if self.count() >= count:
                return time.monotonic() - start
            time.sleep(0.01)
        return None

    def settle(self, quiet: float, within: float) -> int:
        """The count once it has not changed for `quiet` seconds."""
        deadline = time.monotonic() + within
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last


# Figures ------------------------------------------------------------------------------------


def _spread(ms: list[float], prefix: str) -> dict[str, float]:
    from statistics import quantiles

    if len(ms) < 2:
        value = ms[0] if ms else float("nan")
        return {f"{prefix}p50_ms": value, f"{prefix}p99_ms": value, f"{prefix}max_ms": value}
    cuts = quantiles(ms, n=100, method="inclusive")
    return {f"{prefix}p50_ms": cuts[49], f"{prefix}p99_ms": cuts[98], f"{prefix}max_ms": max(ms)}


def ceilings(sizes: dict[str, Any], pages: Pages) -> dict[str, Any]:
    """The generator against the bare sink, and the HTTP front's fixed 200, at 1 and 64."""
    seconds = sizes["peer_rate_s"]
    result: dict[str, Any] = {}
    sink = [httpload.request("POST", "/sink", _json({"service": "svc-0", "message": "load"}))]
    for n in (1, CONNECTIONS):
        run = trio.run(httpload.closed_loop, pages.port, n, seconds, sink)
        result[f"generator_sink_{n}"] = run.rate
        result[f"generator_cpu_us_{n}"] = run.cpu_s / max(1, run.requests) * 1e6
    with announced([PYTHON, str(HERE / "ceilings.py"), "http200", "-"]) as (port, pid):
        for n in (1, CONNECTIONS):
            run, cpu = measured(pid, httpload.closed_loop, port, n, seconds, sink)
            result[f"http200_{n}"] = run.rate
            result[f"http200_cpu_us_{n}"] = cpu / max(1, run.requests) * 1e6
            result[f"http200_generator_cpu_us_{n}"] = run.cpu_s / max(1, run.requests) * 1e6
            if n == CONNECTIONS:
                result.update(_spread(run.latencies_ms, "http200_64_"))
    return result


def measured(
    pid: int, load: Callable[..., Awaitable[httpload.Run]], *args: Any
) -> tuple[httpload.Run, float]:
    """`load(*args)` run, and the CPU seconds process `pid` (all its threads) took meanwhile."""
    run, cpu, _ = measured_loop(pid, load, *args)
    return run, cpu


def measured_loop(
    pid: int, load: Callable[..., Awaitable[httpload.Run]], *args: Any
) -> tuple[httpload.Run, float, float]:
    """`measured`, with the CPU seconds of its main thread (the decision loop) too, and of its
    children (the front processes) added to the process's own."""
    kids = children(pid)
    before, loop = proc_cpu_s(pid) + _cpu_of(kids), loop_cpu_s(pid)
    run = trio.run(load, *args)
    return run, proc_cpu_s(pid) + _cpu_of(kids) - before, loop_cpu_s(pid) - loop


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu_s(pid)
        except OSError:
            continue
    return total


def first_page_and_rates(sizes: dict[str, Any], system: System, pages: Pages) -> dict[str, Any]:
    """Paced alerts to new services (first page), then the rate runs over services whose alert
    is already open (as Prometheus re-sends every evaluation: nothing new is paged)."""
    rate, seconds = sizes["peer_first_page_rate"], sizes["peer_first_page_s"]
    pool, run_s = sizes["peer_pool"], sizes["peer_rate_s"]
    count = int(rate * seconds)
    result: dict[str, Any] = {}
    for k, endpoint in enumerate(system.endpoints()):
        pages.reset()
        fresh = names(k * count, count)
        schedule = [(i / rate, endpoint.encode([s])) for i, s in enumerate(fresh)]
        sent, run = trio.run(httpload.paced, endpoint.port, schedule, 16)
        pages.wait(count, within=30 + count / 50)
        first = pages.first_arrivals()
        ms = [(first[s] - at) * 1000 for s, at in zip(fresh, sent, strict=True) if s in first]
        result[f"{endpoint.name}_first_page_paged"] = len(ms)
        result[f"{endpoint.name}_first_page_failed"] = run.failed
        result.update(_spread(ms, f"{endpoint.name}_first_page_"))
    reused = names(2 * count, pool)
    pages.reset()
    trio.run(httpload.each_once, system.port, 8, system.endpoints()[0].fill(reused))
    pages.wait(pool, within=60 + pool / 20)
    for endpoint in system.endpoints():
        singles = endpoint.singles(reused)
        for n in (1, CONNECTIONS):
            run, cpu, loop = measured_loop(
                system.pid, httpload.closed_loop, endpoint.port, n, run_s, singles
            )
            result[f"{endpoint.name}_reqresp_{n}"] = run.rate
            result[f"{endpoint.name}_reqresp_{n}_cpu_us"] = cpu / max(1, run.requests) * 1e6
            result[f"{endpoint.name}_reqresp_{n}_loop_us"] = loop / max(1, run.requests) * 1e6
            generator = run.cpu_s / max(1, run.requests) * 1e6
            result[f"{endpoint.name}_reqresp_{n}_generator_cpu_us"] = generator
            result[f"{endpoint.name}_reqresp_{n}_failed"] = run.failed
            if n == CONNECTIONS:
                result.update(_spread(run.latencies_ms, f"{endpoint.name}_reqresp_64_"))
        if endpoint.batches:
            batches = endpoint.batched(reused)
            run, cpu, loop = measured_loop(
                system.pid, httpload.closed_loop, endpoint.port, CONNECTIONS, run_s, batches
            )
            result[f"{endpoint.name}_batched_alerts"] = run.rate * BATCH
            result[f"{endpoint.name}_batched_cpu_us"] = cpu / max(1, run.requests * BATCH) * 1e6
            result[f"{endpoint.name}_batched_loop_us"] = loop / max(1, run.requests * BATCH) * 1e6
            result[f"{endpoint.name}_batched_failed"] = run.failed
    # Each service of the pool was paged once, before the rate runs; nothing since.
    result[f"{system.kind}_paged_during_rates"] = pages.count() - pool
    return result


def delivery_and_kill(sizes: dict[str, Any], system: System, pages: Pages) -> dict[str, Any]:
    """N alerts for N new services, as fast as the system takes them (in batches of 100 where
    it does): the time until the receiver has every page. Then kill -9, start again on the same
    storage, send the same N alerts again, as Prometheus would: how many are paged again."""
    n, quiet = sizes["peer_incidents"], sizes["peer_quiet_s"]
    endpoint = system.endpoints()[-1]
    requests = endpoint.fill(names(0, n))
    pages.reset()
    cpu = proc_cpu_s(system.pid)
    workers_cpu = children_cpu_s(system.pid)
    started = time.monotonic()
    run = trio.run(httpload.each_once, system.port, CONNECTIONS, requests)
    taken = time.monotonic() - started
    accepted_cpu = proc_cpu_s(system.pid) - cpu
    left = pages.wait(n, within=600)
    delivering_cpu = proc_cpu_s(system.pid) - cpu - accepted_cpu
    workers_cpu = children_cpu_s(system.pid) - workers_cpu
    result: dict[str, Any] = {
        "delivery_via": endpoint.name,
        "delivery_incidents": n,
        "delivery_accepted_s": taken,
        "delivery_all_paged_s": None if left is None else taken + left,
        "delivery_paged": pages.count(),
        "delivery_failed": run.failed,
        "delivery_rss_mb": rss_mb(system.pid),
        "delivery_accepting_cpu_s": accepted_cpu,
        "delivery_after_accepted_cpu_s": delivering_cpu,
        "delivery_workers_cpu_s": workers_cpu,
    }
    system.kill9()
    pages.reset()
    system.start()
    run = trio.run(httpload.each_once, system.port, CONNECTIONS, requests)
    result["repaged_after_kill9"] = pages.settle(quiet, within=120)
    result["repaged_after_kill9_same_key"] = pages.repeats()
    result["resend_failed"] = run.failed
    return result


def open_incidents_am(binary: str, folder: Path, n: int, idle_s: float, pages: Pages) -> Any:
    with alertmanager(binary, folder, pages.port) as system:
        pages.reset()
        endpoint = system.endpoints()[0]
        trio.run(httpload.each_once, system.port, CONNECTIONS, endpoint.fill(names(0, n)))
        pages.wait(n, within=300)
        return _idle(system.pid, idle_s)


def open_incidents_pagerd(
    folder: Path, n: int, idle_s: float, prepare: Prepare, write_config: WriteConfig
) -> tuple[float, float, float]:
    """pagerd with `n` open incidents, prepared as pagerd writes them (as after a restart):
    through HTTP, opening 100,000 would take minutes of paging. (RSS MB of the core, its
    idle cores, and the RSS MB of its front processes together.)"""
    folder.mkdir(parents=True)
    config = write_config(folder, n)
    prepare(folder / "state" / "pager.db", n, lambda _: time.time() + 3600)
    with pagerd(config) as system:
        rss, cores = _idle(system.pid, idle_s)
        return rss, cores, children_rss_mb(system.pid)


def _idle(pid: int, idle_s: float) -> tuple[float, float]:
    """(RSS MB, cores used) once settled, over `idle_s` seconds of nothing to do."""
    time.sleep(1.0)
    cpu = proc_cpu_s(pid)
    time.sleep(idle_s)
    return rss_mb(pid), (proc_cpu_s(pid) - cpu) / idle_s


def section(
    sizes: dict[str, Any], folder: Path, prepare: Prepare, write_config: WriteConfig
) -> dict[str, Any]:
    binary = find_alertmanager()
    result: dict[str, Any] = {"alertmanager": binary, "connections": CONNECTIONS}
    if binary is None:
        print("[peer] Alertmanager is not installed: pagerd alone", file=sys.stderr)
    else:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True)
        result["alertmanager_version"] = (version.stdout or version.stderr).split("\n")[0]
    pool = sizes["peer_pool"]
    fresh = int(sizes["peer_first_page_rate"] * sizes["peer_first_page_s"])
    with announced([PYTHON, str(HERE / "receiver.py")]) as (port, _):
        pages = Pages(port)
        result.update(ceilings(sizes, pages))
        # One system, then the other, for each figure; each on its own fresh storage.
        if binary is not None:
            with alertmanager(binary, folder / "am-rates", port) as system:
                result.update(first_page_and_rates(sizes, system, pages))
        sub = folder / "pagerd-rates"
        sub.mkdir()
        with pagerd(pagerd_config(sub, 2 * fresh + pool, port)) as system:
            result.update(first_page_and_rates(sizes, system, pages))
            result["pagerd_rss_after_rates_mb"] = rss_mb(system.pid)
            result["pagerd_fronts"] = len(children(system.pid))
            result["pagerd_fronts_rss_after_rates_mb"] = children_rss_mb(system.pid)
        sub = folder / "pagerd-rates-w0"
        sub.mkdir()
        with pagerd(pagerd_config(sub, 2 * fresh + pool, port), workers=0) as system:
            figures = first_page_and_rates(sizes, system, pages)
            result.update({f"w0_{key}": value for key, value in figures.items()})
        if binary is not None:
            with alertmanager(binary, folder / "am-delivery", port) as system:
                result.update(
                    {f"am_{k}": v for k, v in delivery_and_kill(sizes, system, pages).items()}
                )
        sub = folder / "pagerd-delivery"
        sub.mkdir()
        with pagerd(pagerd_config(sub, sizes["peer_incidents"], port)) as system:
            delivery = delivery_and_kill(sizes, system, pages)
            result.update({f"pagerd_{k}": v for k, v in delivery.items()})
        result["pagerd_delivery_workers"] = len(os.sched_getaffinity(0))  # the default
        # The same with every send made by the daemon's own process (`[delivery] workers = 0`).
        sub = folder / "pagerd-delivery-in-process"
        sub.mkdir()
        with pagerd(pagerd_config(sub, sizes["peer_incidents"], port, workers=0)) as system:
            delivery = delivery_and_kill(sizes, system, pages)
            result.update({f"pagerd_w0_{k}": v for k, v in delivery.items()})
        for n in sizes["peer_open"]:
            if binary is not None:
                rss, cores = open_incidents_am(
                    binary, folder / f"am-open-{n}", n, sizes["peer_idle_s"], pages
                )
                result[f"am_open_{n}_rss_mb"], result[f"am_open_{n}_idle_cores"] = rss, cores
            rss, cores, fronts = open_incidents_pagerd(
                folder / f"pagerd-open-{n}", n, sizes["peer_idle_s"], prepare, write_config
            )
            result[f"pagerd_open_{n}_rss_mb"], result[f"pagerd_open_{n}_idle_cores"] = rss, cores
            result[f"pagerd_open_{n}_fronts_rss_mb"] = fronts
    return result


# The table ----------------------------------------------------------------------------------

Row = tuple[str, str, str, str, str, str]


def _x(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or not theirs:
        return ""
    return f"{ours / theirs:.2f}x"


def _ms(figures: dict[str, Any], prefix: str) -> str:
    if f"{prefix}p50_ms" not in figures:
        return ""
    return " / ".join(f"{figures[f'{prefix}{p}_ms']:.1f}" for p in ("p50", "p99", "max"))


def rows(peer: dict[str, Any]) -> list[Row]:
    """pagerd's figure with its front processes, with HTTP in its core (`workers = 0`),
    Alertmanager's beside them (or the ceiling's, said in the row), the ratio pagerd (fronts) /
    the other, and the issue's target."""
    am = peer.get("alertmanager") is not None
    theirs: Callable[[str], Any] = lambda key: peer.get(key) if am else None  # noqa: E731
    missing = "" if am else "not installed"
    fronts = peer.get("pagerd_fronts", "N")
    w0: Callable[[str], Any] = lambda key: peer.get(f"w0_{key}")  # noqa: E731
    out: list[Row] = [
        (
            "measure (pagerd vs Alertmanager)",
            f"pagerd ({fronts} fronts)",
            "pagerd (workers=0)",
            "Alertmanager",
            "ratio",
            "target",
        )
    ]

    def rate(value: Any) -> str:
        return f"{value:,.0f}" if value is not None else ""

    def us(value: Any) -> str:
        return f"{value:.0f}" if value is not None else ""

    for n in (1, CONNECTIONS):
        for name, label in (("rest", "REST /alert"), ("amrcv", "AM receiver")):
            key = f"{name}_reqresp_{n}"
            ours, other = peer[key], theirs(f"am_reqresp_{n}")
            out.append(
                (
                    f"requests/s, {n} connections, 1 alert each: {label}",
                    rate(ours), rate(w0(key)), rate(other) if other else missing,
                    _x(ours, other), "",
                )
            )  # fmt: skip
    other = theirs("am_batched_alerts")
    out.append(
        (
            f"alerts/s, batches of {BATCH}, {CONNECTIONS} connections: AM receiver"
            " (REST: no batch)",
            rate(peer["amrcv_batched_alerts"]), rate(w0("amrcv_batched_alerts")),
            rate(other) if other else missing,
            _x(peer["amrcv_batched_alerts"], other), ">= 1.5x",
        )
    )  # fmt: skip
    for name, label in (("rest", "REST"), ("amrcv", "AM receiver")):
        key = f"{name}_reqresp_64_cpu_us"
        ours, other = peer[key], theirs("am_reqresp_64_cpu_us")
        out.append(
            (
                f"server CPU us a request (all threads and processes), {CONNECTIONS} connections:"
                f" {label}",
                us(ours), us(w0(key)), us(other) if other else missing, _x(ours, other), "",
            )
        )  # fmt: skip
    ours, other = peer["amrcv_batched_cpu_us"], theirs("am_batched_cpu_us")
    out.append(
        (
            f"server CPU us an alert, batches of {BATCH}: AM receiver",
            us(ours), us(w0("amrcv_batched_cpu_us")), us(other) if other else missing,
            _x(ours, other), "",
        )
    )  # fmt: skip
    for name, label in (("rest", "REST"), ("amrcv", "AM receiver")):
        for n in (1, CONNECTIONS):
            key = f"{name}_reqresp_{n}_loop_us"
            out.append(
                (
                    f"decision loop CPU us an event (its thread), {n} connections: {label}",
                    us(peer.get(key)), us(w0(key)), "", "", "",
                )
            )  # fmt: skip
    key = "amrcv_batched_loop_us"
    out.append(
        (
            f"decision loop CPU us an alert (its thread), batches of {BATCH}: AM receiver",
            us(peer.get(key)), us(w0(key)), "", "", "",
        )
    )  # fmt: skip
    for name, label in (("rest", "REST"), ("amrcv", "AM receiver")):
        key = f"{name}_reqresp_64_"
        out.append(
            (
                f"request ms p50/p99/max, {CONNECTIONS} connections: {label}",
                _ms(peer, key), _ms(peer, f"w0_{key}"),
                _ms(peer, "am_reqresp_64_") if am else missing,
                _x(peer[f"{key}p99_ms"], theirs("am_reqresp_64_p99_ms")), "p99 < 1x",
            )
        )  # fmt: skip
    for name, label in (("rest", "REST"), ("amrcv", "AM receiver")):
        key = f"{name}_first_page_"
        out.append(
            (
                f"first page ms p50/p99/max @ 200 alerts/s: {label}",
                _ms(peer, key), _ms(peer, f"w0_{key}"),
                _ms(peer, "am_first_page_") if am else missing,
                _x(peer[f"{key}p99_ms"], theirs("am_first_page_p99_ms")), "p99 < 5 ms",
            )
        )  # fmt: skip
    other = theirs("am_delivery_all_paged_s")
    workers = peer.get("pagerd_delivery_workers")
    for prefix, how in (("pagerd_w0_", "workers=0"), ("pagerd_", f"workers={workers}")):
        if f"{prefix}delivery_incidents" not in peer:
            continue  # a run from before the workers
        ours = peer.get(f"{prefix}delivery_all_paged_s")
        out.append(
            (
                f"s until all {peer[f'{prefix}delivery_incidents']:,} incidents paged"
                f" (batches of {BATCH}), {how}",
                "never" if ours is None else f"{ours:.2f}",
                "",
                f"{other:.2f}" if other else missing,
                _x(ours, other),
                "<= 2x",
            )
        )
        cpu = peer[f"{prefix}delivery_after_accepted_cpu_s"]
        cpu += peer.get(f"{prefix}delivery_workers_cpu_s", 0.0)
        out.append(
            (
                f"  CPU ms a page: the daemon after accepting, and the workers, {how}",
                f"{cpu / peer[f'{prefix}delivery_incidents'] * 1000:.2f}",
                "",
                "",
                "",
                "",
            )
        )
    for key, value in peer.items():
        if key.startswith("pagerd_open_") and key.endswith("_rss_mb") and "_fronts_" not in key:
            size = key[len("pagerd_open_") : -len("_rss_mb")]
            other = theirs(f"am_open_{size}_rss_mb")
            front_rss = peer.get(f"pagerd_open_{size}_fronts_rss_mb")
            out.append(
                (
                    f"RSS MB, {int(size):,} open incidents (the core; + its fronts)",
                    f"{value:.0f}" + ("" if front_rss is None else f" + {front_rss:.0f}"), "",
                    f"{other:.0f}" if other else missing, _x(value, other),
                    "<= 0.1x" if size == "100000" else "",
                )
            )  # fmt: skip
            cores = peer[f"pagerd_open_{size}_idle_cores"]
            other = theirs(f"am_open_{size}_idle_cores")
            out.append(
                (
                    f"idle CPU (cores), {int(size):,} open incidents",
                    f"{cores:.3f}", "", f"{other:.3f}" if other is not None else missing, "", "",
                )
            )  # fmt: skip
    other = theirs("am_repaged_after_kill9")
    again, same = peer["pagerd_repaged_after_kill9"], peer["pagerd_repaged_after_kill9_same_key"]
    out.append(
        (
            f"re-paged after kill -9 and the same {peer['pagerd_delivery_incidents']:,}"
            " alerts again",
            f"{again:,}" + (f" ({same} same Idempotency-Key)" if same else ""), "",
            f"{other:,}" if other is not None else missing, "", "0",
        )
    )  # fmt: skip
    for n in (1, CONNECTIONS):
        ceiling = peer[f"http200_{n}"]
        out.append(
            (
                f"HTTP front: REST requests/s vs fixed-200 ceiling, {n} connections",
                f"{peer[f'rest_reqresp_{n}']:,.0f}", rate(w0(f"rest_reqresp_{n}")),
                f"ceiling {ceiling:,.0f}", f"{peer[f'rest_reqresp_{n}'] / ceiling:.0%}",
                ">= 50%" if n == CONNECTIONS else "",
            )
        )  # fmt: skip
    out.append(
        (
            f"HTTP front: fixed-200 ceiling's CPU us a request, {CONNECTIONS} connections",
            f"{peer[f'http200_cpu_us_{CONNECTIONS}']:.0f}", "", "", "", "",
        )
    )  # fmt: skip
    for n in (1, CONNECTIONS):
        out.append(
            (
                f"generator: requests/s vs bare Trio sink, {n} connections (its CPU us a request)",
                f"{peer[f'generator_sink_{n}']:,.0f} ({peer[f'generator_cpu_us_{n}']:.0f} us)",
                "", "", "", "",
            )
        )  # fmt: skip
    return out
