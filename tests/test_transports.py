"""Each transport against a real server on loopback: what goes on the wire, and how each of the
provider's answers is read (sent, try again, give up). Real clock: the servers are real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from pager.domain import Notify, Target
from pager.ports import PermanentError, TransientError
from pagerd.access.keys import SigningKeys
from pagerd.config.channels import (
    ChannelSection,
    Secret,
    SlackSettings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
    build_channel,
)
from pagerd.delivery.transports.curl import _ascii_url
from pagerd.delivery.transports.slack import SlackTransport, open_button
from pagerd.delivery.transports.smtp import SmtpTransport
from pagerd.delivery.transports.twilio import TwilioTransport
from pagerd.delivery.transports.webhook import WebhookTransport, signature
from pagerd.storage.port import StoreUnavailable
from pagerd.timing.clock import Clock
from tests.http_clients import open_client
from tests.servers import Answer, HttpServer, SmtpServer, TrickleServer, make_ca

T0 = 1_800_000_000.0
SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token-0123456789"


def notify(target: str, message: str = "p99 > 2s") -> Notify:
    return Notify(
        service="payments-api",
        incident=3,
        round=1,
        level=2,
        target=Target.parse(target),
        message=message,
        opened_at=T0,
    )


def smtp_settings(port: int, **kwargs: object) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender="pager@example.com",
        security=str(kwargs.pop("security", "none")),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def http() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


# Email ---------------------------------------------------------------------------------


async def test_smtp_delivers_a_readable_message_with_a_stable_message_id() -> None:
    with SmtpServer() as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 2, Clock(T0))
        queue_id = await transport.send(notify("email:alice@example.com"))
    (got,) = server.received
    assert queue_id == "Q0001"
    assert got.sender == "pager@example.com"
    assert got.recipients == ["alice@example.com"]
    msg = got.message
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == "[pager] payments-api unhealthy (level 2): p99 > 2s"
    assert msg["Message-ID"] == "<payments-api#3/1/2/email%3Aalice%40example.com@pagerd>"
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    for expected in (
        "Service:   payments-api",
        "Incident:  payments-api#3",
        "Level:     2",
        "Alert:     p99 > 2s",
        "Opened at: 2027-01-15T08:00:00.000Z",
        "pager ack payments-api",
    ):
        assert expected in text


async def test_smtp_starttls_with_auth_from_a_password_file(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text("s3cret\n")
    with (
        make_ca(tmp_path) as ca,
        SmtpServer("starttls", ca.server, login=("pager", "s3cret")) as server,
        trio.fail_after(10),
    ):
        section = ChannelSection(
            transport="smtp",
            host="127.0.0.1",
            port=server.port,
            sender="pager@example.com",
            security="starttls",
            username="pager",
            password_file="smtp-password",
            ca_file="test-ca.pem",
        )
        channel, errors = build_channel("email", section, tmp_path)
        assert channel is not None, errors
        assert isinstance(channel.settings, SmtpSettings)
        await SmtpTransport(channel.settings, 5.0, 1, Clock(T0)).send(
            notify("email:bob@example.com")
        )
    assert [r.recipients for r in server.received] == [["bob@example.com"]]
    assert server.logins == ["pager"]


async def test_smtp_implicit_tls(tmp_path: Path) -> None:
    with make_ca(tmp_path) as ca, SmtpServer("tls", ca.server) as server, trio.fail_after(10):
        settings = smtp_settings(server.port, security="tls", ca_file=ca.ca_file)
        await SmtpTransport(settings, 5.0, 1, Clock(T0)).send(notify("email:bob@example.com"))
    assert len(server.received) == 1


async def test_smtp_wrong_password_is_permanent_and_does_not_show_it(tmp_path: Path) -> None:
    with (
        make_ca(tmp_path) as ca,
        SmtpServer("starttls", ca.server, login=("pager", "right")) as server,
        trio.fail_after(10),
    ):
        settings = smtp_settings(
            server.port,
            security="starttls",
            username="pager",
            password=Secret("wrong-password"),
            ca_file=ca.ca_file,
        )
        with pytest.raises(PermanentError) as excinfo:
            await SmtpTransport(settings, 5.0, 1, Clock(T0)).send(notify("email:b@example.com"))
    assert "535" in excinfo.value.reason
    assert "wrong-password" not in excinfo.value.reason


async def test_smtp_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    with make_ca(tmp_path) as ca, SmtpServer("tls", ca.server) as server, trio.fail_after(10):
        settings = smtp_settings(server.port, security="tls")  # no ca_file: system CAs only
        with pytest.raises(TransientError, match="SSL"):
            await SmtpTransport(settings, 5.0, 1, Clock(T0)).send(notify("email:b@example.com"))
    assert server.received == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 try again later", TransientError), ("550 5.1.1 no such user", PermanentError)],
)
async def test_smtp_4xx_is_transient_and_5xx_permanent(reply: str, error: type[Exception]) -> None:
    with SmtpServer() as server, trio.fail_after(10):
        server.rcpt_reply = reply
        with pytest.raises(error, match=reply.split()[0]):
            await SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0)).send(
                notify("email:alice@example.com")
            )


async def test_smtp_server_down_is_transient() -> None:
    with SmtpServer() as server:
        port = server.port
    with trio.fail_after(10), pytest.raises(TransientError):
        await SmtpTransport(smtp_settings(port), 2.0, 1, Clock(T0)).send(
            notify("email:a@b.example")
        )


# SMS over Twilio -----------------------------------------------------------------------


def twilio(http: HttpServer, timeout: float = 5.0, **kwargs: str) -> TwilioTransport:
    settings = TwilioSettings(
        account_sid=SID,
        auth_token=Secret(TOKEN),
        sender=kwargs.get("sender", "+14155550199"),
        messaging_service_sid=kwargs.get("messaging_service_sid"),
        api_base=http.url,
    )
    if settings.messaging_service_sid is not None:
        settings = TwilioSettings(
            SID, Secret(TOKEN), None, settings.messaging_service_sid, http.url
        )
    return TwilioTransport(settings, open_client(timeout, 2, None))


@pytest.mark.usefixtures("either_client")
async def test_twilio_request_shape_and_sid(http: HttpServer) -> None:
    with trio.fail_after(10):
        sid = await twilio(http).send(notify("sms:+14155550100"))
    (request,) = http.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.basic_auth() == (SID, TOKEN)
    form = request.form()
    assert form["To"] == "+14155550100"
    assert form["From"] == "+14155550199"
    assert "payments-api" in form["Body"] and "pager ack payments-api" in form["Body"]
    assert len(form["Body"]) <= 160
    assert request.headers["i-twilio-idempotency-token"] == "payments-api#3/1/2/sms:+14155550100"
    assert sid == "SM" + "1".zfill(32)


@pytest.mark.usefixtures("either_client")
async def test_twilio_messaging_service(http: HttpServer) -> None:
    with trio.fail_after(10):
        await twilio(http, messaging_service_sid="MG123").send(notify("sms:+14155550100"))
    form = http.requests[0].form()
    assert form["MessagingServiceSid"] == "MG123" and "From" not in form


@pytest.mark.usefixtures("either_client")
async def test_twilio_429_is_transient_with_retry_after(http: HttpServer) -> None:
    http.answers.append(
        Answer(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "7"})
    )
    with trio.fail_after(10), pytest.raises(TransientError) as excinfo:
        await twilio(http).send(notify("sms:+14155550100"))
    assert excinfo.value.retry_after == 7.0
    assert "429" in excinfo.value.reason


@pytest.mark.usefixtures("either_client")
async def test_twilio_500_is_transient(http: HttpServer) -> None:
    http.answers.append(Answer(500, {"message": "oops"}))
    with trio.fail_after(10), pytest.raises(TransientError, match="500"):
        await twilio(http).send(notify("sms:+14155550100"))


@pytest.mark.usefixtures("either_client")
async def test_twilio_400_is_permanent_with_twilio_s_reason(http: HttpServer) -> None:
    http.answers.append(
        Answer(400, {"code": 21211, "message": "The 'To' number is not a valid phone number."})
    )
    with trio.fail_after(10), pytest.raises(PermanentError) as excinfo:
        await twilio(http).send(notify("sms:+14155550100"))
    assert "21211" in excinfo.value.reason
    assert TOKEN not in excinfo.value.reason


@pytest.mark.usefixtures("either_client")
async def test_twilio_hanging_past_the_timeout_is_transient(http: HttpServer) -> None:
    http.answers.append(Answer(201, {"sid": "SMlate"}, hang=2.0))
    with trio.fail_after(10), pytest.raises(TransientError, match="timed out"):
        await twilio(http, timeout=0.5).send(notify("sms:+14155550100"))


@pytest.mark.usefixtures("either_client")
async def test_twilio_ends_the_sms_with_its_stored_reply_code(http: HttpServer) -> None:
    asked: list[str] = []

    async def codes(n: Notify) -> int | None:
        asked.append(n.id)
        return 4

    settings = TwilioSettings(SID, Secret(TOKEN), "+14155550199", None, http.url)
    transport = TwilioTransport(settings, open_client(5.0, 1, None), codes)
    with trio.fail_after(10):
        await transport.send(notify("sms:+14155550100"))
    body = http.requests[0].form()["Body"]
    assert body.endswith(" -- Reply 4a to acknowledge, 4c to close")
    assert asked == ["payments-api#3/1/2/sms:+14155550100"]


@pytest.mark.usefixtures("either_client")
async def test_twilio_without_a_stored_reply_code_sends_nothing(http: HttpServer) -> None:
    async def codes(n: Notify) -> int | None:
        raise StoreUnavailable("disk I/O error")

    settings = TwilioSettings(SID, Secret(TOKEN), "+14155550199", None, http.url)
    transport = TwilioTransport(settings, open_client(5.0, 1, None), codes)
    with trio.fail_after(10), pytest.raises(TransientError, match="reply code: disk I/O error"):
        await transport.send(notify("sms:+14155550100"))
    assert http.requests == []


# Slack and webhooks --------------------------------------------------------------------


@pytest.mark.usefixtures("either_client")
async def test_slack_posts_text_and_keeps_the_url_secret(http: HttpServer) -> None:
    url = f"{http.url}/services/T000/B000/XXXXSECRET"
    with trio.fail_after(10):
        provider_id = await SlackTransport(open_client(5, 1, None)).send(notify(f"slack:{url}"))
        http.answers.append(Answer(404, "no_service"))
        with pytest.raises(PermanentError) as excinfo:
            await SlackTransport(open_client(5, 1, None)).send(notify(f"slack:{url}"))
    body = http.requests[0].json()
    assert "payments-api" in body["text"] and "pager ack payments-api" in body["text"]
    assert provider_id == "HTTP 201"
    assert "XXXXSECRET" not in excinfo.value.reason
    assert "XXXXSECRET" not in str(notify(f"slack:{url}").id)


@pytest.mark.usefixtures("either_client")
async def test_slack_unreachable_is_transient_without_the_url(http: HttpServer) -> None:
    url = f"{http.url}/services/T000/B000/XXXXSECRET"
    http.__exit__()
    with trio.fail_after(10), pytest.raises(TransientError) as excinfo:
        await SlackTransport(open_client(2, 1, None)).send(notify(f"slack:{url}"))
    assert "XXXXSECRET" not in excinfo.value.reason


@pytest.mark.usefixtures("either_client")
async def test_webhook_body_headers_and_signature(http: HttpServer) -> None:
    settings = WebhookSettings(headers={"X-Team": "payments"}, secret=Secret("hmac-key"))
    with trio.fail_after(10):
        await WebhookTransport(settings, open_client(5, 1, None)).send(
            notify(f"webhook:{http.url}/hook")
        )
    (request,) = http.requests
    assert request.path == "/hook"
    assert request.json() == {
        "id": "payments-api#3/1/2/webhook:http://127.0.0.1:"
        + str(http.port)
        + "/...#"
        + str(Target.parse(f"webhook:{http.url}/hook")).rpartition("#")[2],
        "service": "payments-api",
        "incident": "payments-api#3",
        "round": 1,
        "level": 2,
        "message": "p99 > 2s",
        "opened_at": "2027-01-15T08:00:00.000Z",
        "text": "[pager] payments-api level 2: p99 > 2s -- ack: pager ack payments-api",
        "person": None,
        "via": None,
    }
    assert request.headers["x-team"] == "payments"
    assert request.headers["idempotency-key"] == request.json()["id"]
    assert request.headers["x-pager-signature"] == signature("hmac-key", request.body)


@pytest.mark.parametrize(("value", "expected"), [("nan", None), ("inf", 3600.0), ("-inf", None)])
@pytest.mark.usefixtures("either_client")
async def test_a_retry_after_that_is_not_a_number_of_seconds_is_bounded(
    http: HttpServer, value: str, expected: float | None
) -> None:
    http.answers.append(Answer(503, {}, headers={"Retry-After": value}))
    client = open_client(5.0, 1, None)
    try:
        with trio.fail_after(10), pytest.raises(TransientError) as caught:
            await SlackTransport(client).send(notify(f"slack:{http.url}/services/T/B/X"))
    finally:
        await client.aclose()
    assert caught.value.retry_after == expected


@pytest.mark.usefixtures("either_client")
async def test_a_trickling_http_server_is_cut_off_at_the_timeout() -> None:
    # Headers a byte every 50 ms: no single read waits the 1 s timeout, the answer never ends.
    with TrickleServer(prefix=b"HTTP/1.1 200 OK\r\nX-Slow: ", lasting=10.0) as server:
        client = open_client(1.0, 1, None)
        try:
            with trio.fail_after(60), pytest.raises(TransientError, match="within 1s"):
                await SlackTransport(client).send(
                    notify(f"slack:http://127.0.0.1:{server.port}/services/T/B/X")
                )
        finally:
            await client.aclose()
    assert server.gave_up == 0  # pagerd hung up, not the server


@pytest.mark.usefixtures("either_client")
async def test_twilio_accepting_without_a_sid_is_sent_not_failed(http: HttpServer) -> None:
    http.answers.append(Answer(201, "queued, but not JSON"))
    with trio.fail_after(10):
        provider_id = await twilio(http).send(notify("sms:+14155550100"))
    assert provider_id == "HTTP 201 (no sid)"


@pytest.mark.usefixtures("either_client")
async def test_https_is_verified_against_the_channel_s_ca_file(tmp_path: Path) -> None:
    with make_ca(tmp_path) as ca, HttpServer(tls=ca.server) as https, trio.fail_after(20):
        url = f"https://localhost:{https.port}/hook"
        trusted = WebhookTransport(WebhookSettings(), open_client(5.0, 1, ca.ca_file))
        assert await trusted.send(notify(f"webhook:{url}")) == "HTTP 201"
        untrusted = WebhookTransport(WebhookSettings(), open_client(5.0, 1, None))
        with pytest.raises(TransientError) as refused:
            await untrusted.send(notify(f"webhook:{url}"))
    assert len(https.requests) == 1
    assert "/hook" not in refused.value.reason


def test_libcurl_is_given_the_host_idna_encoded_and_the_path_percent_encoded() -> None:
    assert (
        _ascii_url("https://hooks.bücher.example/a b?x=é")
        == "https://hooks.xn--bcher-kva.example/a%20b?x=%C3%A9"
    )


BOT_TOKEN = "xoxb-17-bot-token-4f1c9e"
APP = SlackSettings(
    bot_token=Secret(BOT_TOKEN),
    signing_secret=Secret("8f742231b10e8888abcd99edabcd00d1"),
    channel="#ops",
)


def slack_app(http: HttpServer, keys: SigningKeys | None = None) -> SlackTransport:
    settings = SlackSettings(
        bot_token=APP.bot_token,
        signing_secret=APP.signing_secret,
        channel=APP.channel,
        api_base=f"{http.url}/api",
    )
    return SlackTransport(open_client(5.0, 1, None), settings, lambda: keys)


@pytest.mark.usefixtures("either_client")
async def test_a_slack_app_posts_with_its_bot_token_and_signed_buttons(http: HttpServer) -> None:
    keys = SigningKeys((b"\x07" * 32,))
    http.answers.append(Answer(200, {"ok": True, "channel": "C0OPS1234", "ts": "17.0001"}))
    with trio.fail_after(10):
        provider_id = await slack_app(http, keys).send(notify("slack:app"))
    assert provider_id == "C0OPS1234/17.0001"
    (request,) = http.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["channel"] == "#ops" and "pager ack payments-api" in body["text"]
    [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
    buttons = [open_button(keys, b["value"]) for b in actions["elements"]]
    assert [(b.action, b.service, b.incident) for b in buttons if b] == [
        ("ack", "payments-api", 3),
        ("close", "payments-api", 3),
    ]


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        (Answer(200, {"ok": False, "error": "ratelimited"}), TransientError, "ratelimited"),
        (Answer(200, {"ok": False, "error": "internal_error"}), TransientError, "internal_error"),
        (Answer(200, {"ok": False, "error": "channel_not_found"}), PermanentError, "not_found"),
        (Answer(200, {"ok": False, "error": "x" * 500}), PermanentError, "x" * 100 + "$"),
        (Answer(200, {"ok": False}), PermanentError, "no error given"),
        (Answer(200, "ok"), TransientError, "no JSON object"),
        (Answer(200, ["ok", True]), TransientError, "no JSON object"),
        (Answer(429, {"ok": False}, {"Retry-After": "3"}), TransientError, "HTTP 429"),
        (Answer(500, {"ok": False, "error": BOT_TOKEN}), TransientError, "HTTP 500"),
        (Answer(404, "no such method"), PermanentError, "HTTP 404"),
    ],
)
@pytest.mark.usefixtures("either_client")
async def test_a_slack_app_s_refusals_are_read_as_slack_means_them(
    http: HttpServer, answer: Answer, error: type[Exception], reason: str
) -> None:
    """Slack answers 200 to a call it refuses, `ok` false and the reason in `error`: tried again
    where trying again can help (a rate limit, Slack's own failure), else given up."""
    http.answers.append(answer)
    with trio.fail_after(10), pytest.raises(error, match=reason) as caught:
        await slack_app(http).send(notify("slack:app"))
    if answer.status == 429:
        assert isinstance(caught.value, TransientError) and caught.value.retry_after == 3.0


@pytest.mark.usefixtures("either_client")
async def test_a_slack_app_without_its_bot_token_sends_nothing(http: HttpServer) -> None:
    transport = SlackTransport(open_client(5.0, 1, None), SlackSettings(api_base=http.url))
    with trio.fail_after(10), pytest.raises(PermanentError, match="bot_token"):
        await transport.send(notify("slack:app"))
    assert http.requests == []
