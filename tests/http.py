"""The daemon with its HTTP front door on 127.0.0.1 (a free port), and an httpx client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from pagerd import app
from pagerd.config import Config, load
from tests.harness import CHANNELS, ONCALL, running

KEYS: Final = {
    "ops": "rest-key-0f3a9c1d7e5b",
    "deploys": "rest-key-only-web-77aa",
    "am": "am-key-5c2e8f1b3d",
}

CRON: Final = '[services.cron]\npolicy = "oncall"\nheartbeat = "5m"\n'

INTEGRATIONS: Final = """
[http]
listen = "127.0.0.1:0"
workers = 0  # HTTP in the daemon's own process: these tests run it under MockClock
max_body_bytes = 4096
rate_limit = "100/s"
burst = 100

[integrations.ops]
type = "rest"
key_file = "ops.key"

[integrations.deploys]
type = "rest"
key_file = "deploys.key"
services = ["web"]

[integrations.am]
type = "alertmanager"
key_file = "am.key"
service_label = "service"
"""


def http_config(folder: Path, extra: str = "", http: str = "") -> Config:
    """The harness's config (services api and web, policy oncall) with the front door on;
    `http` is added to its `[http]` table, `extra` at the end."""
    integrations = INTEGRATIONS.replace("[http]\n", "[http]\n" + http, 1) + extra
    return keyed_config(folder, KEYS, integrations)


def keyed_config(
    folder: Path, keys: dict[str, str], integrations: str, services: str = ""
) -> Config:
    """pager.toml in `folder`: the harness's channels and policy oncall, `integrations`, services
    api and web on oncall, then `services`; each key of `keys` in its `<name>.key` file."""
    for name, key in keys.items():
        (folder / f"{name}.key").write_text(key + "\n")  # a key file's newline is not the key's
    text = CHANNELS + ONCALL + integrations
    text += '\n[services.api]\npolicy = "oncall"\n[services.web]\npolicy = "oncall"\n' + services
    path = folder / "pager.toml"
    path.write_text(text)
    return load(path)


def base_url(daemon: app.Daemon, scheme: str = "http") -> str:
    assert daemon.http is not None, "the HTTP front door is not on"
    return f"{scheme}://127.0.0.1:{daemon.http.ports[0]}"


def auth(name: str = "ops") -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[name]}"}


@asynccontextmanager
async def front(
    config: Config, **kwargs: Any
) -> AsyncIterator[tuple[app.Daemon, httpx.AsyncClient]]:
    """The daemon running `config`, and a client for its front door."""
    async with running(config, **kwargs) as daemon:  # noqa: SIM117  # the client needs its port
        async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
            yield daemon, client


async def raw_get(port: int, method: str = "GET", path: str = "/metrics") -> bytes:
    """One HTTP/1.1 request written by hand to 127.0.0.1:`port`; everything read until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data
