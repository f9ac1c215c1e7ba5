"""The little of ASGI the front needs: a request's head, its body read within bounds, and one
response sent whole. No framework: every response here is a short JSON (or text) document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs
import msgspec
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from pager.protocol import error_reply

JSON: Final = "application/json"
_encode = msgspec.json.Encoder().encode


class TooLarge(Exception):
    """The body is over the limit: 413, without reading the rest."""


class Disconnected(Exception):
    """The client went away before its body was whole: nothing to answer."""


@attrs.frozen
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: Any, *headers: tuple[str, str]) -> Response:
        return cls(status, _encode(document) + b"\n", JSON, headers)


def error(status: int, code: str, message: str, *headers: tuple[str, str]) -> Response:
    """The socket protocol's error reply, with an HTTP status."""
    return Response(status, error_reply(code, message), JSON, headers)


def header_map(scope: HTTPScope) -> Mapping[str, str]:
    """Header names in lower case, values as latin-1 text; a repeated header's last value."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


async def read_body(
    receive: ASGIReceiveCallable, headers: Mapping[str, str], limit: int, seconds: float
) -> bytes:
    """The whole body, at most `limit` bytes (`TooLarge` past it, without waiting for the rest),
    within `seconds` in all (`trio.TooSlowError`): a slow sender holds a connection, not
    memory, and not for long."""
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    with trio.fail_after(seconds):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def send_response(
    send: ASGISendCallable, response: Response, *, head_only: bool = False
) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body = b"" if head_only else response.body
    await send({"type": "http.response.body", "body": body, "more_body": False})
