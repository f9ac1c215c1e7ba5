"""The HTTP `Client` of a delivery worker process: libcurl (pycurl), one handle a thread.

Measured in one run against one local receiver (`bench/clients.py`, docs/performance.md), a POST
costs httpx on Trio about 1.1 ms of CPU here and libcurl about 0.12 ms, urllib3 0.4 ms: most of
httpx's is its connection pool's bookkeeping and its layers of Python per request. A worker's
whole purpose is to send, so it uses the cheapest that keeps every bound the daemon's client
keeps (see `pagerd.delivery.transports.http`): TLS verified against the system's (certifi's)
or the channel's `ca_file` roots, the connection and the whole exchange each within the
channel's timeout (`CONNECTTIMEOUT`, `TIMEOUT`: a server trickling its answer a byte at a time
is cut off too), the answer read up to `MAX_BODY`, no redirects, no proxy from the environment,
http and https only, and the connection kept alive for the next send.

`perform` blocks, so each send runs in a thread (`trio.to_thread`, at most `concurrency` at
once): libcurl lets go of the GIL meanwhile. A handle is used by one thread at a time and kept
for the next send, with its connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import certifi
import httpx
import pycurl
import trio

from pager.ports import PermanentError, TransientError
from pagerd.delivery.transports.http import MAX_BODY, Answer, without

USER_AGENT: Final = "pagerd"
_PERMANENT: Final = frozenset(
    {pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL, pycurl.E_BAD_FUNCTION_ARGUMENT}
)


class CurlClient:
    def __init__(self, timeout: float, concurrency: int, ca_file: Path | None) -> None:
        self.timeout = timeout
        self._limiter = trio.CapacityLimiter(concurrency)
        self._ca_file = str(ca_file) if ca_file is not None else certifi.where()
        self._free: list[Any] = []
        self._closed = False

    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        try:
            target = _ascii_url(url)
            lines = [f"{name}: {value}".encode("ascii") for name, value in headers.items()]
        except (httpx.InvalidURL, UnicodeError) as exc:
            # As httpx does: the kind only, never the (secret) URL or header.
            raise PermanentError(f"request cannot be sent: {type(exc).__name__}") from None
        # No `Expect: 100-continue` (libcurl's default for a larger body): a wait for nothing.
        lines.append(b"Expect:")
        # Abandoned if cancelled: a worker is cancelled only when its daemon is gone, and then
        # it exits at once, its transfers with it (a send finished for nobody is a page sent
        # twice: the daemon's next start sends it again).
        return await trio.to_thread.run_sync(
            self._perform, target, url, content, lines, limiter=self._limiter,
            abandon_on_cancel=True,
        )  # fmt: skip

    async def aclose(self) -> None:
        self._closed = True
        while self._free:
            self._free.pop().close()

    def _handle(self) -> Any:
        if self._free:
            return self._free.pop()
        curl = pycurl.Curl()
        milliseconds = max(1, int(self.timeout * 1000))
        curl.setopt(pycurl.NOSIGNAL, 1)  # in a thread: no SIGALRM for name lookups
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, milliseconds)
        curl.setopt(pycurl.TIMEOUT_MS, milliseconds)  # the whole exchange
        curl.setopt(pycurl.SSL_VERIFYPEER, 1)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2)
        curl.setopt(pycurl.CAINFO, self._ca_file)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PROXY, "")  # a stray HTTP(S)_PROXY must not reroute pages
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.USERAGENT, USER_AGENT)
        curl.setopt(pycurl.ACCEPT_ENCODING, None)  # no compressed answers (no bombs either)
        return curl

    def _perform(self, target: str, url: str, content: bytes, lines: list[bytes]) -> Answer:
        curl = self._handle()
        body = bytearray()
        headers: dict[str, str] = {}
        cut = False

        def write(chunk: bytes) -> int | None:
            nonlocal cut
            body.extend(chunk)
            if len(body) < MAX_BODY:
                return None
            cut = True
            return 0  # enough: libcurl stops reading and hangs up

        def header(line: bytes) -> None:
            text = line.decode("latin-1").strip()
            if text.startswith("HTTP/"):
                headers.clear()  # a 100 Continue's, or a proxy's: only the last answer's
            name, sep, value = text.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()

        keep = True
        try:
            curl.setopt(pycurl.URL, target)
            curl.setopt(pycurl.POSTFIELDS, content)
            curl.setopt(pycurl.HTTPHEADER, lines)
            curl.setopt(pycurl.WRITEFUNCTION, write)
            curl.setopt(pycurl.HEADERFUNCTION, header)
            try:
                curl.perform()
            except pycurl.error as exc:
                if not (cut and exc.args[0] == pycurl.E_WRITE_ERROR):
                    keep = False
                    raise _failure(exc, url, target, self.timeout) from None
            status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        finally:
            # The callbacks hold this send's buffers: not kept past it.
            curl.setopt(pycurl.WRITEFUNCTION, _discard)
            curl.setopt(pycurl.HEADERFUNCTION, _discard)
            if keep and not self._closed:
                self._free.append(curl)
            else:
                curl.close()
        return Answer(status, headers, bytes(body[:MAX_BODY]))


def _discard(data: bytes) -> None:
    return None


def _ascii_url(url: str) -> str:
    """`url` as libcurl takes it: the host IDNA-encoded (each label checked: one too long is
    refused here, as httpx refuses it, not looked up), the rest percent-encoded."""
    parsed = httpx.URL(url)
    parsed.host.encode("idna")  # raises UnicodeError for a label out of bounds
    text = str(parsed)
    text.encode("ascii")
    return text


def _failure(exc: pycurl.error, url: str, target: str, timeout: float) -> Exception:
    code = exc.args[0]
    message = exc.args[1] if len(exc.args) > 1 else ""
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return TransientError(f"timed out: no complete answer within {timeout:g}s")
    if code in _PERMANENT:
        return PermanentError(f"request cannot be sent: curl error {code}")
    text = without(without(str(message), target), url)
    return TransientError(f"request failed: {text or f'curl error {code}'}")
