"""Running the real daemon code in-process, over its real Unix socket, for tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio
import trio.testing

from pagerd import app
from pagerd.config import Config, ConfigError, load
from pagerd.storage.offload import inline
from pagerd.storage.port import StoreUnavailable, Write
from pagerd.timing.clock import Clock

if TYPE_CHECKING:
    import pytest

T0: Final = 1_800_000_000.0  # 2027-01-15T08:00:00Z: every test starts at the same wall time

CHANNELS: Final = """
[daemon]
socket = "pager.sock"
state_dir = "state"
idle_timeout = "48h"  # tests keep a connection open while hours pass on the mock clock

[channels.email]
transport = "log"
[channels.sms]
transport = "log"
[channels.log]
path = "state/notifications.jsonl"
"""

ONCALL: Final = """
[policies.oncall]
repeat = 0
[[policies.oncall.levels]]
targets = ["email:alice@example.com", "sms:+14155550100", "email:alice@example.com"]
ack_timeout = "5m"
[[policies.oncall.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "15m"
"""


def write_config(
    folder: Path, policies: str = ONCALL, services: dict[str, str] | None = None
) -> Config:
    services = services if services is not None else {"api": "oncall", "web": "oncall"}
    text = CHANNELS + policies
    for name, policy in services.items():
        text += f'\n[services."{name}"]\npolicy = "{policy}"\n'
    path = folder / "pager.toml"
    path.write_text(text)
    return load(path)


def errors_of(folder: Path, text: str) -> list[str]:
    """The errors of `text` written as `folder`/pager.toml, which must not load."""
    path = folder / "pager.toml"
    path.write_text(text)
    try:
        load(path)
    except ConfigError as exc:
        return exc.errors
    raise AssertionError("the config loaded")


def notifications(config: Config) -> list[dict[str, Any]]:
    """Every notification the `log` transport wrote, in order."""
    try:
        text = config.log_path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines()]


def steps(config: Config) -> list[tuple[str, int, int, str]]:
    """(incident, round, level, target) of each notification written, in order."""
    return [
        (n["incident"], n["round"], n["level"], f"{n['channel']}:{n['target']}")
        for n in notifications(config)
    ]


async def settle() -> None:
    """Wait until every task is blocked: replies sent, commits done, notifications delivered."""
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def running(
    config: Config, clock: Clock | None = None, **kwargs: Any
) -> AsyncIterator[app.Daemon]:
    """The daemon, started and recovered; stopped cleanly on exit.

    Blocking calls run inline on the loop, so no time passes under `MockClock` while SQLite works;
    `offload=None` runs them in threads as the real daemon does (for tests on the real clock).
    """
    stop = trio.Event()
    options: dict[str, Any] = {"offload": inline, "delivery_workers": 0, **kwargs}
    async with trio.open_nursery() as nursery:
        daemon: app.Daemon = await nursery.start(
            partial(app.serve, config, stop, clock=clock or Clock(T0), **options)
        )
        try:
            yield daemon
        finally:
            stop.set()


def failing_writes(
    daemon: app.Daemon, monkeypatch: pytest.MonkeyPatch, failures: int
) -> list[Sequence[Write]]:
    """Make the next `failures` commits fail as a failing disk does; the batches refused."""
    store = daemon.store
    write = store.write
    refused: list[Sequence[Write]] = []

    def failing(batch: Sequence[Write]) -> None:
        if len(refused) < failures:
            refused.append(batch)
            raise StoreUnavailable("disk I/O error")
        write(batch)

    monkeypatch.setattr(store, "write", failing)
    return refused


async def metrics_text(socket: Path) -> str:
    """The daemon's metrics, asked for on its socket."""
    async with connect(socket) as conn:
        text: str = (await conn.request("metrics"))["text"]
        return text


def metric_samples(text: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition, by name and labels."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def until(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
    """Until `condition()` holds, on the real clock: what a real process does (Alertmanager, a
    sender) comes at its own pace, so it is looked at every 20 ms, for at most `within` s."""
    with trio.move_on_after(within):
        while True:
            if condition():
                return
            await trio.sleep(0.02)
    raise AssertionError(f"not within {within}s: {what}")


def json_line(obj: object) -> bytes:
    """`obj` as one request line, encoded as any client would (not by pagerd's own encoder)."""
    return json.dumps(obj).encode() + b"\n"


class Connection:
    """A client connection speaking the line protocol, as any program would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    @classmethod
    async def open(cls, path: Path) -> Connection:
        return cls(await trio.open_unix_socket(str(path)))

    async def send(self, line: bytes) -> None:
        await self.stream.send_all(line)

    async def send_json(self, obj: object) -> None:
        await self.send(json_line(obj))

    async def receive_line(self) -> bytes | None:
        """The next reply line, or None if the daemon closed the connection."""
        while (end := self._buffer.find(b"\n")) < 0:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    async def receive(self) -> dict[str, Any]:
        line = await self.receive_line()
        assert line is not None, "the daemon closed the connection"
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        await self.send_json({"op": op, **fields})
        return await self.receive()

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[Connection]:
    conn = await Connection.open(path)
    try:
        yield conn
    finally:
        await conn.aclose()


async def status(config: Config, service: str) -> dict[str, Any]:
    """The daemon's `status` reply for `service`, over a connection of its own."""
    async with connect(config.socket) as conn:
        return await conn.request("status", service=service)


async def metric(conn: Connection, name: str) -> float:
    """The value of the unlabelled metric `name`, from the daemon's `metrics` reply."""
    text = (await conn.request("metrics"))["text"]
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics")
