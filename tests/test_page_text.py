"""Every provider takes the page whatever the alert's text: several lines, control characters,
4096 characters, Slack's markup. Against real servers on loopback, as in test_transports."""

from __future__ import annotations

import pytest
import trio

from pager.messages import MAX_SHORT, body, short, subject
from pager.templates import SMS_CUT, SMS_SEGMENT, gsm_length
from pagerd.delivery.transports.slack import SlackTransport
from pagerd.delivery.transports.smtp import SmtpTransport
from pagerd.timing.clock import Clock
from tests.http_clients import open_client
from tests.servers import HttpServer, SmtpServer
from tests.test_transports import T0, notify, smtp_settings, twilio

LOG_LINE = (
    "ERROR db: connection refused\r\nTraceback (most recent call last):\n\x1b[31m  boom\x1b[0m"
)


async def test_an_email_is_sent_for_a_message_of_several_lines() -> None:
    with SmtpServer() as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 2, Clock(T0))
        await transport.send(notify("email:alice@example.com", LOG_LINE))
    (got,) = server.received
    assert " ".join(str(got.message["Subject"]).split()) == (  # as folded and unfolded
        "[pager] payments-api unhealthy (level 2): ERROR db: connection refused "
        "Traceback (most recent call last): \\x1b[31m boom\\x1b[0m"
    )
    payload = got.message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "\n" not in text.replace("\r\n", "")  # CRLF line ends, as SMTP has them
    assert "Alert:     ERROR db: connection refused\r\nTraceback" in text
    assert "\x1b" not in text


@pytest.mark.usefixtures("either_client")
async def test_an_sms_of_a_4096_character_message_fits_one_segment() -> None:
    """The message is cut to the room the rest of the SMS leaves in one segment (160 GSM-7
    characters), with a GSM-7 marker: "…" would make the whole SMS Unicode (70 a segment)."""
    with HttpServer() as http, trio.fail_after(10):
        await twilio(http).send(notify("sms:+14155550100", "x" * 4096))
    sms = http.requests[0].form()["Body"]
    assert gsm_length(sms) == SMS_SEGMENT  # septets: "[" and "]" take two each
    assert sms.endswith("x" + SMS_CUT + " -- ack: pager ack payments-api")
    assert sms.isascii()


@pytest.mark.usefixtures("either_client")
async def test_slack_markup_in_a_message_cannot_mention_the_channel() -> None:
    with HttpServer() as http, trio.fail_after(10):
        url = f"{http.url}/services/T000/B000/X"
        message = "<!channel> see <https://evil.example|the runbook> & more"
        await SlackTransport(open_client(5, 1, None)).send(notify(f"slack:{url}", message))
    text = http.requests[0].json()["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; see &lt;https://evil.example|the runbook&gt; &amp; more" in text


@pytest.mark.parametrize("message", [LOG_LINE, "x" * 4096, "\u2028\x85\x00", ""])
def test_short_and_subject_are_one_line_and_bounded(message: str) -> None:
    n = notify("sms:+14155550100", message)
    for text in (short(n), subject(n)):
        assert text.isprintable(), text
    assert len(short(n)) <= MAX_SHORT
    assert len(subject(n)) < 300
    assert "\x1b" not in body(n)
