"""What the HTTP transports (Twilio, Slack, webhooks) share: one client per channel, and one
reading of a provider's answer into sent / try again / give up."""

from __future__ import annotations

import logging
import math
import ssl
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Final
from urllib.parse import quote

import httpx
import trio

from pager.ports import PermanentError, TransientError

MAX_RETRY_AFTER: Final = 3600.0
MAX_DETAIL: Final = 4096


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
            return await client.post(url, **kwargs)  # type: ignore[arg-type]
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
            f"request failed: {_without(str(exc), url) or type(exc).__name__}"
        ) from None


def check(response: httpx.Response, what: str) -> None:
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


def retry_after(response: httpx.Response) -> float | None:
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


def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    # Long enough that a secret is never cut in half here: the outbox redacts what it knows,
    # then keeps the first few hundred characters (see `pagerd.redact`).
    return f": {text[:MAX_DETAIL]}" if text else ""


def _without(text: str, url: str) -> str:
    return text.replace(url, "<url>")
