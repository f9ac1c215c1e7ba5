"""An SMTP send against a real server on loopback, where the server misbehaves around the
message: the outcome is DATA's reply (what QUIT answers is logged only), the whole exchange is
bounded by the channel's timeout even when the server trickles, and non-ASCII addresses go as
SMTPUTF8 or fail for good. Real clock: the servers are real."""

from __future__ import annotations

import logging

import pytest
import trio

from pager.ports import PermanentError, TransientError
from pagerd.delivery.transports.smtp import SmtpTransport
from pagerd.timing.clock import Clock
from tests.servers import SmtpServer, TrickleServer
from tests.test_transports import T0, notify, smtp_settings


@pytest.mark.parametrize("quit_reply", ["421 4.3.2 shutting down", "554 5.0.0 oops", "drop"])
async def test_what_quit_answers_after_an_accepted_message_is_logged_only(
    quit_reply: str, caplog: pytest.LogCaptureFixture
) -> None:
    with SmtpServer() as server, trio.fail_after(10), caplog.at_level(logging.INFO):
        server.quit_reply = quit_reply
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0))
        queued = await transport.send(notify("email:alice@example.com"))
    assert queued == "Q0001"
    assert len(server.received) == 1
    assert "SMTP QUIT after the message was accepted" in caplog.text


async def test_a_trickling_server_is_cut_off_at_the_timeout() -> None:
    # A byte every 50 ms: no single read ever waits the 1 s timeout, the greeting never ends.
    with TrickleServer(interval=0.05, lasting=10.0) as server, trio.fail_after(60):
        transport = SmtpTransport(smtp_settings(server.port), 1.0, 1, Clock(T0))
        with pytest.raises(TransientError, match="no complete answer within 1s"):
            await transport.send(notify("email:alice@example.com"))
    assert server.connections == 1
    assert server.gave_up == 0  # pagerd hung up, not the server


async def test_a_non_ascii_address_goes_as_smtputf8() -> None:
    with SmtpServer(smtputf8=True) as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0))
        await transport.send(notify("email:jürgen@example.com"))
    (received,) = server.received
    assert received.recipients == ["jürgen@example.com"]


async def test_a_non_ascii_address_without_smtputf8_fails_for_good() -> None:
    with SmtpServer() as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0))
        with pytest.raises(PermanentError, match="SMTPUTF8"):
            await transport.send(notify("email:jürgen@example.com"))
    assert server.received == []


async def test_an_alert_message_with_line_breaks_is_emailed_with_a_one_line_subject() -> None:
    message = "disk full\r\nBcc: mallory@example.com\n\x1b[2Jtrace:\n  at main()"
    with SmtpServer() as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0))
        await transport.send(notify("email:alice@example.com", message))
    (received,) = server.received
    assert received.recipients == ["alice@example.com"]
    assert received.message["Bcc"] is None
    subject = str(received.message["Subject"]).replace("\r\n", "").replace("\n", "")  # unfolded
    assert "\r" not in subject and "\x1b" not in subject
    assert "disk full Bcc: mallory@example.com \\x1b[2Jtrace:   at main()" in subject
    payload = received.message.get_payload(decode=True)
    assert isinstance(payload, bytes) and b"  at main()" in payload


async def test_a_reply_without_end_is_cut_off_at_a_bound_and_retried() -> None:
    # "220-..." lines, fast and for ever: each line is short, the reply never ends.
    lines = b"220-a greeting that goes on\r\n" * 4000
    with TrickleServer(b"", interval=0.01, lasting=30.0, chunk=lines) as server:
        transport = SmtpTransport(smtp_settings(server.port), 3.0, 1, Clock(T0))
        with trio.fail_after(20), pytest.raises(TransientError, match="reply over 64 KiB"):
            await transport.send(notify("email:alice@example.com"))


async def test_a_long_page_goes_with_crlf_line_ends_and_is_taken_whole() -> None:
    """The default email of a page with its links and a long message is well over 1,000 bytes:
    sent with bare LFs, a strict server (aiosmtpd, Postfix's `smtpd_forbid_bare_newline`) reads
    it as one line and refuses it."""
    message = "disk full on db-3, the replica is lagging; see the runbook " * 20
    with SmtpServer() as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0))
        await transport.send(notify("email:alice@example.com", message))
    (received,) = server.received
    payload = received.message.get_payload(decode=True)
    assert isinstance(payload, bytes) and len(payload) > 1000
    assert message.strip().encode() in payload
