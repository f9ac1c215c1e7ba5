"""Email over SMTP, with `smtplib` in a worker thread so the event loop never blocks on it.

One connection per message: a pager sends few, and a fresh connection cannot be a stale one.
The notification's key (`Notify.key`) is the `Message-ID`, so a message sent twice in the
ambiguous window is recognisably the same message.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import SMTPUTF8, Policy
from email.utils import formatdate
from typing import Any, Final

import trio

from pager.domain import Notify
from pager.ports import PermanentError, TransientError
from pagerd.config.channels import SmtpSettings
from pagerd.delivery.redact import Redactor, channel_secrets
from pagerd.delivery.transports.http import MAX_DETAIL
from pagerd.delivery.wording import PLAIN, Wording
from pagerd.timing.clock import Clock

# RFC 5322 atext: what a Message-ID's left part may hold; anything else is percent-encoded.
_ATEXT: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~."
)
log = logging.getLogger("pagerd.transports.smtp")

_QUEUED_RE: Final = re.compile(r"queued as ([^\s]+)", re.IGNORECASE)


def message_id(n: Notify) -> str:
    left = "".join(c if c in _ATEXT and c != "%" else f"%{ord(c):02X}" for c in n.key)
    return f"<{left}@pagerd>"


def build_message(n: Notify, sender: str, at: float, wording: Wording = PLAIN) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = n.target.address
    msg["Subject"] = wording.subject(n)  # one line: a header with a break is refused
    msg["Date"] = formatdate(at, usegmt=True)
    msg["Message-ID"] = message_id(n)
    msg["X-Pager-Service"] = n.service
    msg["X-Pager-Incident"] = n.incident_id
    msg["X-Pager-Level"] = str(n.level)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(wording.body(n))
    return msg


class SmtpTransport:
    def __init__(
        self,
        settings: SmtpSettings,
        timeout: float,
        concurrency: int,
        clock: Clock,
        wording: Wording = PLAIN,
    ) -> None:
        self._settings = settings
        self._wording = wording
        self._timeout = timeout
        self._limiter = trio.CapacityLimiter(concurrency)
        self._clock = clock
        self._redactor = Redactor(channel_secrets(settings))
        self._tls = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file is not None else None
        )

    async def send(self, notification: Notify) -> str | None:
        msg = build_message(
            notification, self._settings.sender, self._clock.wall_now(), self._wording
        )
        return await trio.to_thread.run_sync(
            self._send, msg, notification.target.address, limiter=self._limiter
        )

    def _send(self, msg: EmailMessage, to: str) -> str | None:
        s = self._settings
        exchange = _Exchange(self._timeout)
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = _SMTP_SSL(timeout=self._timeout, context=self._tls)
            else:
                smtp = _SMTP(timeout=self._timeout)
            with exchange.watching(smtp):
                try:
                    queued = self._exchange(smtp, exchange, msg, to)
                except (smtplib.SMTPException, OSError):
                    if exchange.expired:
                        raise TransientError(
                            f"SMTP no complete answer within {self._timeout:g}s"
                        ) from None
                    raise
                # The outcome is DATA's reply: the message is the server's now. What QUIT
                # answers cannot change that; taken as the outcome, a 4xx there sent it twice.
                _quit(smtp, self._redactor)
                return queued
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error, "SMTP") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server cannot take this message: {exc}") from None
        except UnicodeError as exc:
            # An address or header that cannot be encoded: no retry can help.
            raise PermanentError(f"SMTP cannot encode the message: {str(exc)[:200]}") from None
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset, timed out, TLS failed: the server may be back in a moment.
            raise TransientError(f"SMTP {type(exc).__name__}: {exc}") from None

    def _exchange(self, smtp: smtplib.SMTP, exchange: _Exchange, msg: EmailMessage, to: str) -> str:
        s = self._settings
        # Connected here rather than by the constructor, so that the greeting is under the
        # exchange's deadline too; the constructor would have set the name TLS checks.
        smtp._host = s.host  # type: ignore[attr-defined]
        smtp.connect(s.host, s.port)
        exchange.step(smtp)
        smtp.ehlo_or_helo_if_needed()
        if s.security == "starttls":
            exchange.step(smtp)
            smtp.starttls(context=self._tls)
            smtp.ehlo()
        if s.username is not None and s.password is not None:
            exchange.step(smtp)
            smtp.login(s.username, s.password.value)
        options: list[str] = []
        policy: Policy = msg.policy
        if not (s.sender.isascii() and to.isascii()):
            # An address with non-ASCII characters travels only as SMTPUTF8 (RFC 6531).
            if not smtp.has_extn("smtputf8"):
                raise PermanentError(
                    "SMTP server does not support SMTPUTF8, which a non-ASCII address needs"
                )
            options = ["SMTPUTF8"]
            policy = SMTPUTF8
        exchange.step(smtp)
        _expect(smtp.mail(s.sender, options), "MAIL FROM")
        exchange.step(smtp)
        _expect(smtp.rcpt(to), "RCPT TO")
        exchange.step(smtp)
        # CRLF line ends, as SMTP has them: `smtplib` sends bytes as given, and a message of
        # bare LFs is one line over 1,000 bytes to a strict server (refused "line too long").
        code, reply = smtp.data(msg.as_bytes(policy=policy.clone(linesep="\r\n")))
        _expect((code, reply), "DATA")
        text = reply.decode(errors="replace")
        queued = _QUEUED_RE.search(text)
        return queued.group(1) if queued else text[:100]


MAX_REPLY: Final = 64 * 1024
"""Bytes of one SMTP reply read at most. `smtplib` bounds each line, not how many lines a
reply has: a server answering "250-..." without end filled memory until the timeout."""


class _Budget:
    """The server's side of the connection as `smtplib` reads it, with a budget per reply."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.left = MAX_REPLY

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self._file.readline(size)
        self.left -= len(line)
        if self.left < 0:
            # 421, as a server closing the channel says it: retried, never failed for good.
            raise smtplib.SMTPResponseException(421, b"reply over 64 KiB: hung up")
        return line

    def close(self) -> None:
        self._file.close()


class _Bounded(smtplib.SMTP):
    def getreply(self) -> tuple[int, bytes]:
        if self.sock is not None and not isinstance(self.file, _Budget):
            self.file = _Budget(self.file or self.sock.makefile("rb"))
        if isinstance(self.file, _Budget):
            self.file.left = MAX_REPLY
        return super().getreply()


class _SMTP(_Bounded):
    pass


class _SMTP_SSL(_Bounded, smtplib.SMTP_SSL):
    pass


class _Exchange:
    """The time limit of one whole SMTP exchange. The socket's timeout bounds each read, but a
    server that trickles a byte at a time never lets one time out: so before each command the
    timeout is shrunk to what remains, and when nothing remains a timer shuts the socket down
    under whatever read is blocked (a thread cannot be cancelled; its socket can)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.expired = False

    @contextmanager
    def watching(self, smtp: smtplib.SMTP) -> Iterator[None]:
        timer = threading.Timer(self.timeout, self._expire, (smtp,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            smtp.close()

    def _expire(self, smtp: smtplib.SMTP) -> None:
        self.expired = True
        sock = smtp.sock
        if sock is not None:
            # socket.socket's own shutdown, also for a TLS socket: the TLS layer's would clear
            # its state under the reading thread's feet.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def step(self, smtp: smtplib.SMTP) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0 or self.expired:
            self.expired = True
            raise TimeoutError("deadline passed")
        if smtp.sock is not None:
            smtp.sock.settimeout(remaining)


def _quit(smtp: smtplib.SMTP, redactor: Redactor) -> None:
    """Say goodbye; whatever the answer, it is only logged."""
    try:
        code, reply = smtp.docmd("QUIT")
    except (smtplib.SMTPException, OSError) as exc:
        log.info("SMTP QUIT after the message was accepted failed: %s", type(exc).__name__)
        return
    if code != 221:
        log.info(
            "SMTP QUIT after the message was accepted answered %d: %s",
            code, redactor.clean(reply.decode(errors="replace")),
        )  # fmt: skip


def _expect(answer: tuple[int, bytes], step: str) -> None:
    code, text = answer
    if not 200 <= code < 300:
        raise _classify(code, text, step)


def _classify(code: int, text: bytes | str, step: str) -> Exception:
    reply = text.decode(errors="replace") if isinstance(text, bytes) else text
    reason = f"SMTP {step} {code}: {reply.strip()[:MAX_DETAIL]}"
    if 500 <= code < 600:
        return PermanentError(reason)
    return TransientError(reason)
