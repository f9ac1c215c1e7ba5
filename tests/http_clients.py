"""Both HTTP clients a transport may post with, for the transport tests: httpx (the daemon's
own process) and libcurl (a delivery worker's). `open_client` builds the one the `either_client`
fixture (conftest.py) chose for the test: httpx when a test does not ask."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from pagerd.delivery.transports import http
from pagerd.delivery.transports.curl import USER_AGENT, CurlClient
from pagerd.delivery.transports.http import Client, HttpxClient
from tests.servers import Request

KINDS: Final = ("httpx", "curl")
_chosen = ["httpx"]


def open_client(timeout: float, concurrency: int, ca_file: Path | None) -> Client:
    if _chosen[0] == "curl":
        return CurlClient(timeout, concurrency, ca_file)
    return HttpxClient(http.open_client(timeout, concurrency, ca_file))


def choose(kind: str) -> None:
    _chosen[0] = kind


def senders(requests: Iterable[Request]) -> set[str]:
    """Which client posted `requests`: "curl" (a delivery worker's) or "httpx" (the daemon's)."""
    return {"curl" if r.headers.get("user-agent") == USER_AGENT else "httpx" for r in requests}
