"""HTTP clients for a delivery worker, measured in one run against one local receiver.

    .venv/bin/python bench/clients.py                  # every client, 20,000 POSTs each, twice
    .venv/bin/python bench/clients.py --posts 2000 --passes 1 --json out.json

Each client runs in a process of its own (as a delivery worker does) and sends the same webhook
POSTs (a page's JSON body, its `Idempotency-Key`) to `bench/receiver.py`'s sink, `concurrency`
at a time, each POST bounded as `pagerd/delivery/transports/http.py` bounds it: a connect and
read timeout, the whole exchange within the timeout, the answer's body read up to `MAX_BODY`,
TLS verification on (the receiver is plain HTTP, so the TLS handshake itself is not measured,
but every client is built with a verifying context), connections kept alive and reused. The
figures are the process's CPU (all its threads: user and system) per POST, and POSTs a second.

- `httpx`: pagerd's client as it is (`open_client` and `post`, streaming with the body cap).
- `httpx-tuned`: one `AsyncHTTPTransport` without retries, keep-alive expiry raised, the answer
  read without building a second `Response`.
- `httpcore`: `httpcore.AsyncConnectionPool` directly, with a streamed, capped body.
- `urllib3`: a `PoolManager` in `concurrency` worker threads (`trio.to_thread`).
- `pycurl`: one reusable `Curl` handle per worker thread (libcurl keeps its connection alive),
  `TIMEOUT` for the whole exchange and a write callback that stops at the cap.
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import trio

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pagerd.delivery.transports.http import MAX_BODY, open_client, post  # noqa: E402

TIMEOUT: Final = 10.0
CLIENTS: Final = ("httpx", "httpx-tuned", "httpcore", "urllib3", "pycurl")

Post = Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]]


def _context() -> ssl.SSLContext:
    return ssl.create_default_context()


async def _httpx(concurrency: int) -> Post:
    client = open_client(TIMEOUT, concurrency, None)

    async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        response = await post(client, url, content=body, headers=headers)
        return response.status_code, response.content

    return send


async def _httpx_tuned(concurrency: int) -> Post:
    import httpx

    transport = httpx.AsyncHTTPTransport(
        verify=_context(),
        limits=httpx.Limits(
            max_connections=concurrency,
            max_keepalive_connections=concurrency,
            keepalive_expiry=300.0,
        ),
        retries=0,
    )
    client = httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(TIMEOUT), follow_redirects=False,
        trust_env=False,
    )  # fmt: skip

    async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        with trio.fail_after(TIMEOUT):
            request = client.build_request("POST", url, content=body, headers=headers)
            response = await client.send(request, stream=True)
            try:
                got = bytearray()
                async for chunk in response.aiter_raw():
                    got += chunk
                    if len(got) >= MAX_BODY:
                        break
            finally:
                await response.aclose()
        return response.status_code, bytes(got[:MAX_BODY])

    return send


async def _httpcore(concurrency: int) -> Post:
    import httpcore

    pool = httpcore.AsyncConnectionPool(
        ssl_context=_context(),
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=300.0,
    )
    extensions = {
        "timeout": {"connect": TIMEOUT, "read": TIMEOUT, "write": TIMEOUT, "pool": TIMEOUT}
    }

    async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        with trio.fail_after(TIMEOUT):
            async with pool.stream(
                "POST", url, headers=list(headers.items()), content=body, extensions=extensions
            ) as response:
                got = bytearray()
                async for chunk in response.aiter_stream():
                    got += chunk
                    if len(got) >= MAX_BODY:
                        break
        return response.status, bytes(got[:MAX_BODY])

    return send


async def _urllib3(concurrency: int) -> Post:
    import urllib3

    manager = urllib3.PoolManager(
        num_pools=4,
        maxsize=concurrency,
        block=True,
        timeout=urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT),
        retries=False,
        ssl_context=_context(),
    )
    limiter = trio.CapacityLimiter(concurrency)

    def blocking(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        response = manager.request(
            "POST", url, body=body, headers=headers, preload_content=False, redirect=False
        )
        try:
            got = response.read(MAX_BODY)
        finally:
            response.release_conn()
        return response.status, got

    async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await trio.to_thread.run_sync(blocking, url, body, headers, limiter=limiter)

    return send


async def _pycurl(concurrency: int) -> Post:
    import pycurl

    free: list[Any] = []
    limiter = trio.CapacityLimiter(concurrency)

    def handle() -> Any:
        if free:
            return free.pop()
        curl = pycurl.Curl()
        curl.setopt(pycurl.TIMEOUT_MS, int(TIMEOUT * 1000))
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(TIMEOUT * 1000))
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.SSL_VERIFYPEER, 1)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PROXY, "")
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        return curl

    def blocking(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        curl = handle()
        got = bytearray()

        def write(chunk: bytes) -> int | None:
            got.extend(chunk)
            return None if len(got) < MAX_BODY else 0  # 0: stop reading (a write error)

        try:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.POSTFIELDS, body)
            curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])
            curl.setopt(pycurl.WRITEFUNCTION, write)
            try:
                curl.perform()
            except pycurl.error as exc:
                if exc.args[0] != pycurl.E_WRITE_ERROR:
                    raise
            status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        finally:
            free.append(curl)
        return status, bytes(got[:MAX_BODY])

    async def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return await trio.to_thread.run_sync(blocking, url, body, headers, limiter=limiter)

    return send


FACTORIES: Final[dict[str, Callable[[int], Awaitable[Post]]]] = {
    "httpx": _httpx,
    "httpx-tuned": _httpx_tuned,
    "httpcore": _httpcore,
    "urllib3": _urllib3,
    "pycurl": _pycurl,
}


async def _measure(name: str, port: int, posts: int, concurrency: int) -> dict[str, float]:
    send = await FACTORIES[name](concurrency)
    url = f"http://127.0.0.1:{port}/sink"
    body = json.dumps({"service": "svc", "message": "p99 > 2s", "incident": 1}).encode()
    warm = min(posts // 10, 500)
    count = 0

    async def worker(n: int) -> None:
        nonlocal count
        for i in range(n):
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"svc#1/1/1/{i}"}
            status, _ = await send(url, body, headers)
            assert status == 200, status
            count += 1

    async def run(total: int) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                nursery.start_soon(worker, total // concurrency + (i < total % concurrency))

    await run(warm)
    cpu0, t0 = _cpu(), time.perf_counter()
    await run(posts)
    cpu1, t1 = _cpu(), time.perf_counter()
    return {"cpu_us": (cpu1 - cpu0) / posts * 1e6, "per_s": posts / (t1 - t0)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def available() -> list[str]:
    found = []
    for name in CLIENTS:
        module = {"httpx-tuned": "httpx"}.get(name, name)
        try:
            __import__(module)
        except ImportError:
            continue
        found.append(name)
    return found


def compare(posts: int, concurrency: int, passes: int) -> dict[str, dict[str, float]]:
    """Every available client, each in its own process, alternating, `passes` times; the best
    pass of each (the least disturbed by the machine's other work)."""
    receiver = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "receiver.py")], stdout=subprocess.PIPE
    )
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        best: dict[str, dict[str, float]] = {}
        for _ in range(passes):
            for name in available():
                out = subprocess.run(
                    [sys.executable, __file__, "--one", name, "--port", str(port),
                     "--posts", str(posts), "--concurrency", str(concurrency)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                figures = json.loads(out.stdout)
                if name not in best or figures["cpu_us"] < best[name]["cpu_us"]:
                    best[name] = figures
        return best
    finally:
        receiver.terminate()
        receiver.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        figures = trio.run(_measure, args.one, args.port, args.posts, args.concurrency)
        print(json.dumps(figures))
        return
    results = compare(args.posts, args.concurrency, args.passes)
    print(f"{'client':<14}{'CPU us a POST':>15}{'POSTs/s':>10}   ({args.concurrency} at once)")
    for name, f in results.items():
        print(f"{name:<14}{f['cpu_us']:>15,.0f}{f['per_s']:>10,.0f}")
    missing = sorted(set(CLIENTS) - set(results))
    if missing:
        print(f"not installed, not measured: {', '.join(missing)}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
