"""`/openapi.json` against what the server really does: every documented operation answers, every
route served is documented, and every status the probes see is one its operation documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from tests.http import KEYS, auth, front, http_config

# Requests meant to draw each status an endpoint may give, beside a valid one.
PROBES: dict[str, list[dict[str, Any]]] = {
    "alert": [{"service": "api", "message": "m"}, {"service": "nope"}],
    "ack": [{"service": "web"}, {"service": "api", "by": "bob"}],
    "healthy": [{"service": "api"}, {"service": 1}],
    "silence": [
        {"service": "api", "reason": "db migration", "for": "1h"},
        {"service": "nope", "reason": "r", "for": "1h"},
        {"service": "api", "reason": "r", "until": "2000-01-01T00:00:00Z"},
    ],
}


def fill(pattern: str, service: str = "api") -> str:
    return pattern.replace("{service}", service).replace("{key}", KEYS["am"]).replace("{id}", "1")


async def probe(client: httpx.AsyncClient, method: str, path: str, op: dict[str, Any]) -> set[int]:
    """The statuses of a few requests to one operation: valid, wrong key, bad input, too big."""
    headers = auth() if op.get("security") else {}
    seen: set[int] = set()
    if method == "get":
        for service in ("api", "nope", "bad%20name"):
            response = await client.get(fill(path, service), headers=headers)
            seen.add(response.status_code)
        if op.get("security"):
            seen.add(
                (await client.get(fill(path), headers={"authorization": "Bearer x"})).status_code
            )
        return seen
    if method == "delete":
        for wrong in ("1", "999", "x"):
            response = await client.delete(path.replace("{id}", wrong), headers=headers)
            seen.add(response.status_code)
        unkeyed = await client.delete(fill(path), headers={"authorization": "Bearer x"})
        return seen | {unkeyed.status_code}
    op_name = {
        "/alert": "alert", "/acknowledge": "ack", "/healthy": "healthy", "/silences": "silence",
    }.get(path)  # fmt: skip
    for body in PROBES.get(op_name or "", [{}]):
        seen.add((await client.post(path, json=body, headers=headers)).status_code)
    seen.add((await client.post(path, content=b"{", headers=headers)).status_code)
    seen.add((await client.post(path, content=b"x" * 5000, headers=headers)).status_code)
    seen.add((await client.post(path, json={"service": "api"})).status_code)
    seen.add(
        (await client.post(path, json={"service": "api"}, headers=auth("deploys"))).status_code
    )
    return seen


async def test_the_document_is_what_the_server_does(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(http_config(tmp_path)) as (daemon, client):
            document = (await client.get("/openapi.json")).json()
            assert daemon.http_app is not None
            served = {(r.method.lower(), r.pattern) for r in daemon.http_app.routes}
            documented = {
                (method, path) for path, ops in document["paths"].items() for method in ops
            }
            assert served == documented
            for path, ops in document["paths"].items():
                for method, op in ops.items():
                    seen = await probe(client, method, path, op)
                    assert 404 not in seen or "404" in op["responses"], (method, path)
                    assert seen <= {int(code) for code in op["responses"]}, (method, path, seen)
                    assert 405 not in seen and 500 not in seen
            # Every parameter named in a path is declared, and every operation has a summary.
            for path, ops in document["paths"].items():
                for op in ops.values():
                    names = {p["name"] for p in op.get("parameters", [])}
                    assert names == {s[1:-1] for s in path.split("/") if s.startswith("{")}
                    assert op["summary"]


async def test_the_documents_server_follows_a_reload_of_public_url(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    text = config.path.read_text()
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            assert "servers" not in (await client.get("/openapi.json")).json()
            config.path.write_text(
                text.replace("[http]\n", '[http]\npublic_url = "https://pager.example.com"\n', 1)
            )
            assert await daemon.reload()
            document = (await client.get("/openapi.json")).json()
            assert document["servers"] == [{"url": "https://pager.example.com"}]
            config.path.write_text(
                text.replace("[http]\n", '[http]\npublic_url = "https://pager2.example.com"\n', 1)
            )
            assert await daemon.reload()
            document = (await client.get("/openapi.json")).json()
            assert document["servers"] == [{"url": "https://pager2.example.com"}]
            config.path.write_text(text)
            assert await daemon.reload()
            assert "servers" not in (await client.get("/openapi.json")).json()
