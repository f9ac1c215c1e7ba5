"""Both HTTP clients a transport may post with, for the transport tests: httpx (the daemon's
own process) and libcurl (a delivery worker's). `open_client` builds the one the `either_client`
fixture (conftest.py) chose for the test: httpx when a test does not ask."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pagerd.delivery.transports import http
from pagerd.delivery.transports.curl import CurlClient
from pagerd.delivery.transports.http import Client, HttpxClient

KINDS: Final = ("httpx", "curl")
_chosen = ["httpx"]


def open_client(timeout: float, concurrency: int, ca_file: Path | None) -> Client:
    if _chosen[0] == "curl":
        return CurlClient(timeout, concurrency, ca_file)
    return HttpxClient(http.open_client(timeout, concurrency, ca_file))


def choose(kind: str) -> None:
    _chosen[0] = kind
