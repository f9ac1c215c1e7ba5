"""What the HTTP transports (Twilio, Slack, webhooks) share: one client per channel, and one
reading of a provider's answer into sent / try again / give up.

A transport posts through a `Client`: `HttpxClient` (httpx on Trio, in the daemon's own process)
or, in a delivery worker process, `pagerd.delivery.transports.curl.CurlClient` (libcurl, about a
tenth of httpx's CPU a POST: see docs/performance.md). Both keep the same bounds: TLS verified,
each step and the whole exchange within the channel's timeout, the answer's body read up to
`MAX_BODY`, no redirects, no proxy from the environment, and connections kept for reuse."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import ssl
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import quote

import attrs
import httpx
import trio

from pager.ports import PermanentError, TransientError

MAX_RETRY_AFTER: Final = 3600.0
MAX_DETAIL: Final = 4096
MAX_BODY: Final = 64 * 1024


@attrs.frozen
class Answer:
    """A provider's answer: its status, headers (names in lower case) and body, cut at
    `MAX_BODY` bytes."""

    status_code: int
    headers: Mapping[str, str] = attrs.Factory(dict)
    content: bytes = b""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client(Protocol):
    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        """POST `content`; raise `TransientError` or `PermanentError` (never quoting `url`) when
        no answer comes, or the request cannot be sent at all."""
        ...

    async def aclose(self) -> None: ...


class HttpxClient:
    """The `Client` of the daemon's own process: httpx on Trio."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        response = await post(self.client, url, content=content, headers=dict(headers))
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def client_of(client: httpx.AsyncClient | Client) -> Client:
    return HttpxClient(client) if isinstance(client, httpx.AsyncClient) else client


def json_body(value: object) -> bytes:
    """`value` as a JSON request body, as httpx's `json=` encodes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def open_client(timeout: float, concurrency: int, ca_file: Path | None) -> httpx.AsyncClient:
    # httpx logs every request's URL at INFO; a webhook URL is a secret, so keep them quiet.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        verify=verify,
        follow_redirects=False,
        trust_env=False,  # a stray HTTP(S)_PROXY must not reroute pages
    )


async def post(client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
    """POST, turning transport failures into `TransientError`s that never contain `url`.

    The client's timeout bounds each step (connect, each read); a server that trickles its
    answer a byte at a time passes every one of them, so the whole exchange is bounded by the
    same timeout as well."""
    total = client.timeout.read
    try:
        with trio.fail_after(total if total is not None else math.inf):
            return await _bounded(client, url, **kwargs)
    except trio.TooSlowError:
        raise TransientError(f"timed out: no complete answer within {total:g}s") from None
    except httpx.TimeoutException as exc:
        raise TransientError(f"timed out ({type(exc).__name__})") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError) as exc:
        # A URL, host or header that cannot be encoded: trying again cannot help. The reason
        # names the kind only; the exception's text may quote the (secret) URL or a header.
        raise PermanentError(f"request cannot be sent: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise TransientError(
            f"request failed: {without(str(exc), url) or type(exc).__name__}"
        ) from None


async def _bounded(client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
    """The answer, its body cut at `MAX_BODY` bytes: all that is read of it is a message id or
    an error to quote (`MAX_DETAIL`), and a provider answering without end (or a compressed
    bomb) must not fill pagerd's memory, nor turn a clear 404 into a timeout."""
    async with client.stream("POST", url, **kwargs) as streamed:  # type: ignore[arg-type]
        body = bytearray()
        chunks = streamed.aiter_bytes()
        async for chunk in chunks:
            body += chunk
            if len(body) >= MAX_BODY:
                del body[MAX_BODY:]
                # Hang up, and let the readers (a stack of async generators) end on the closed
                # connection: left suspended, each would be finalised by the garbage collector.
                await streamed.aclose()
                with contextlib.suppress(httpx.HTTPError, RuntimeError):
                    async for _ in chunks:
                        pass
                break
    headers = [
        (k, v)
        for k, v in streamed.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        streamed.status_code, headers=headers, content=bytes(body), request=streamed.request
    )


def check(response: Answer | httpx.Response, what: str) -> None:
    """Raise unless `response` is a 2xx: 429 and 5xx are worth retrying, other 4xx are not."""
    if response.is_success:
        return
    detail = f"{what} answered HTTP {response.status_code}{_detail(response)}"
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(detail, retry_after(response))
    raise PermanentError(detail)


def header_value(text: str) -> str:
    """`text` as an HTTP header value: ASCII, non-ASCII characters percent-encoded (a
    notification id names its target, and a target's host may be an international name)."""
    return "".join(c if " " <= c <= "~" else quote(c, safe="") for c in text)


def retry_after(response: Answer | httpx.Response) -> float | None:
    """Seconds the provider asks us to wait (`Retry-After`: seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return MAX_RETRY_AFTER if seconds > 0 else None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _detail(response: Answer | httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    # Long enough that a secret is never cut in half here: the outbox redacts what it knows,
    # then keeps the first few hundred characters (see `pagerd.redact`).
    return f": {text[:MAX_DETAIL]}" if text else ""


def without(text: str, url: str) -> str:
    return text.replace(url, "<url>")
