"""Real servers on loopback for delivery tests: an SMTP server and an HTTP server.

Each runs in its own thread (aiosmtpd's asyncio loop; the stdlib's threading HTTP server), so
pagerd talks to them over real sockets exactly as it talks to a provider.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import attrs
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    # aiosmtpd cannot be given port 0: find a free one ourselves.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class Received:
    sender: str
    recipients: list[str]
    message: Message


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server.rcpt_reply
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.server.lock:
            self.server.received.append(
                Received(
                    str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(content)
                )
            )
            self.server.queue_ids += 1
            return f"250 2.0.0 Ok: queued as Q{self.server.queue_ids:04d}"

    async def handle_QUIT(self, smtp: SMTP, session: Session, envelope: Envelope) -> str | None:
        reply = self.server.quit_reply
        if reply == "drop":
            transport = smtp.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()  # gone without a word, after the message was taken
            return "221 Bye"
        return reply or "221 Bye"


class SmtpServer:
    """An SMTP server in a thread: plain, STARTTLS, or implicit TLS; with AUTH if a login is set."""

    def __init__(
        self,
        security: str = "none",
        tls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.queue_ids = 0
        self.rcpt_reply: str | None = None  # e.g. "451 4.3.0 try later", "550 5.1.1 no such user"
        self.logins: list[str] = []
        self.quit_reply: str | None = None  # e.g. "421 closing", "554 oops", "drop"
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if security == "tls":
            kwargs["ssl_context"] = tls
        elif security == "starttls":
            kwargs["tls_context"] = tls
            kwargs["require_starttls"] = True
        if login is not None:
            kwargs["authenticator"] = self._authenticator(login)
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = security != "none"
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, server_hostname="localhost",
            **kwargs,
        )  # fmt: skip

    def _authenticator(self, login: tuple[str, str]) -> Any:
        def authenticate(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == login
            )
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok, handled=False)

        return authenticate

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} messages in {within}s")
            time.sleep(0.01)
        return list(self.received)


class TrickleServer:
    """A TCP server that answers every connection one byte at a time, slowly, and never
    finishes a line: each read gets a byte well within any timeout, the reply never ends."""

    def __init__(
        self,
        prefix: bytes = b"220-",
        interval: float = 0.05,
        lasting: float = 30.0,
        chunk: bytes = b"x",  # sent at each interval: a large one makes an endless answer
    ):
        self.prefix = prefix
        self.chunk = chunk
        self.interval = interval
        self.lasting = lasting  # then it gives up: a client without a deadline is not stuck
        self.gave_up = 0  # connections the server ended, rather than the client
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.lasting
        with conn, contextlib.suppress(OSError):
            conn.sendall(self.prefix)
            while not self._stop.wait(self.interval):
                if time.monotonic() > end:
                    self.gave_up += 1
                    return
                conn.sendall(self.chunk)

    def __enter__(self) -> TrickleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.listener.close()


@attrs.define
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = attrs.Factory(time.time)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def json(self) -> Any:
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str]:
        kind, _, encoded = self.headers["authorization"].partition(" ")
        assert kind == "Basic"
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user, password


@attrs.define
class Answer:
    status: int
    body: Any = attrs.field(factory=dict)
    headers: dict[str, str] = attrs.field(factory=dict)
    hang: float = 0.0  # seconds to stall before answering: past the client's timeout
    echo: bool = False  # answer with the request's path and headers, as Express's 404 does
    hold: threading.Event | None = None  # answer only once it is set (a test's own signal)


class HttpServer:
    """A threaded HTTP server that records each request and answers from a script.

    `answers` is consumed one per request; when it is empty, `default` answers. Twilio's answer
    shape is the default: 201 with a message `sid`.
    """

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self.answers: list[Answer] = []
        self.default: Answer | None = None
        self.lock = threading.Lock()
        self.sids = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with server.lock:
                    server.requests.append(
                        Request(
                            "POST",
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    answer = server.answers.pop(0) if server.answers else server.default
                    if answer is None:
                        server.sids += 1
                        answer = Answer(201, {"sid": f"SM{server.sids:032d}", "status": "queued"})
                if answer.hang:
                    time.sleep(answer.hang)
                if answer.hold is not None:
                    answer.hold.wait(60)
                if answer.echo:
                    lines = [f"Cannot POST {self.path}"]
                    lines += [f"{k}: {v}" for k, v in self.headers.items()]
                    data = "\n".join(lines).encode()
                else:
                    data = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (timeout test)
                    self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:  # HTTPS: each connection's handshake in its own handler thread
            self.httpd.socket = tls.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def accepted(self) -> list[Request]:
        """Requests answered with a 2xx."""
        return list(self.requests)

    def wait_for(self, count: int, within: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {count} requests in {within}s")
            time.sleep(0.01)
        return list(self.requests)


@attrs.frozen
class TestCA:
    ca_file: Path
    server: ssl.SSLContext


@contextmanager
def make_ca(folder: Path) -> Iterator[TestCA]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    ca_file = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield TestCA(ca_file, server)
