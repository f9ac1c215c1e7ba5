"""Email over SMTP, with `smtplib` in a worker thread so the event loop never blocks on it.

One connection per message: a pager sends few, and a fresh connection cannot be a stale one.
The notification's key (`Notify.key`) is the `Message-ID`, so a message sent twice in the
ambiguous window is recognisably the same message.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Final

import trio

from pager.domain import Notify
from pager.messages import body, subject
from pager.ports import PermanentError, TransientError
from pagerd.channels import SmtpSettings
from pagerd.clock import Clock

# RFC 5322 atext: what a Message-ID's left part may hold; anything else is percent-encoded.
_ATEXT: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~."
)
_QUEUED_RE: Final = re.compile(r"queued as ([^\s]+)", re.IGNORECASE)


def message_id(n: Notify) -> str:
    left = "".join(c if c in _ATEXT and c != "%" else f"%{ord(c):02X}" for c in n.key)
    return f"<{left}@pagerd>"


def build_message(n: Notify, sender: str, at: float) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = n.target.address
    msg["Subject"] = subject(n)
    msg["Date"] = formatdate(at, usegmt=True)
    msg["Message-ID"] = message_id(n)
    msg["X-Pager-Service"] = n.service
    msg["X-Pager-Incident"] = n.incident_id
    msg["X-Pager-Level"] = str(n.level)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body(n))
    return msg


class SmtpTransport:
    def __init__(
        self, settings: SmtpSettings, timeout: float, concurrency: int, clock: Clock
    ) -> None:
        self._settings = settings
        self._timeout = timeout
        self._limiter = trio.CapacityLimiter(concurrency)
        self._clock = clock
        self._tls = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file is not None else None
        )

    async def send(self, notification: Notify) -> str | None:
        msg = build_message(notification, self._settings.sender, self._clock.now())
        return await trio.to_thread.run_sync(
            self._send, msg, notification.target.address, limiter=self._limiter
        )

    def _send(self, msg: EmailMessage, to: str) -> str | None:
        s = self._settings
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=self._timeout, context=self._tls)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=self._timeout)
            with smtp:
                smtp.ehlo_or_helo_if_needed()
                if s.security == "starttls":
                    smtp.starttls(context=self._tls)
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password.value)
                _expect(smtp.mail(s.sender), "MAIL FROM")
                _expect(smtp.rcpt(to), "RCPT TO")
                code, reply = smtp.data(msg.as_bytes())
                _expect((code, reply), "DATA")
                queued = _QUEUED_RE.search(reply.decode(errors="replace"))
                return queued.group(1) if queued else reply.decode(errors="replace")[:100]
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error, "SMTP") from None
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset, timed out, TLS failed: the server may be back in a moment.
            raise TransientError(f"SMTP {type(exc).__name__}: {exc}") from None


def _expect(answer: tuple[int, bytes], step: str) -> None:
    code, text = answer
    if not 200 <= code < 300:
        raise _classify(code, text, step)


def _classify(code: int, text: bytes | str, step: str) -> Exception:
    reply = text.decode(errors="replace") if isinstance(text, bytes) else text
    reason = f"SMTP {step} {code}: {reply.strip()[:200]}"
    if 500 <= code < 600:
        return PermanentError(reason)
    return TransientError(reason)
