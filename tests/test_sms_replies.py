"""SMS replies end to end: pages go out through a Twilio-shaped HTTP server on loopback with
their reply code, and a Twilio-shaped client posts the person's reply to pagerd's webhook,
signed as Twilio documents it (written from Twilio's docs, not from pagerd's verifier).

On the real clock: the Twilio stand-in is a real server in a thread, so the mock clock's
autojump would fire pagerd's send timeouts while it answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import pytest
import trio

from pagerd import app
from pagerd.config import Config, load
from tests.harness import connect, metric_samples, metrics_text, running, status, until
from tests.http import base_url
from tests.http_clients import senders
from tests.servers import HttpServer

AUTH_TOKEN: Final = "twilio-auth-token-7d41c0a9e2"
PUBLIC: Final = "https://pager.example.com"
ALICE, BOB, STRANGER = "+14155550100", "+14155550101", "+14155550999"
OURS: Final = "+14155550199"


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """What Twilio puts in X-Twilio-Signature, as its docs say ("Validating Requests are coming
    from Twilio"): take the full URL Twilio called; sort the POST parameters by name; append
    each name and value, with no delimiters; sign with HMAC-SHA1, the account's auth token as
    the key; base64-encode."""
    data = url
    for name in sorted(params):
        data += name + params[name]
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def test_the_twilio_client_signs_twilio_s_documented_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


class Twilio:
    """Twilio's side of an incoming message: the form it posts (the fields it documents for an
    incoming SMS), signed for the webhook URL the operator set (`PUBLIC` + the path), sent to
    pagerd's real listener as a proxy in front of it would pass it on."""

    def __init__(self, client: httpx.AsyncClient, token: str = AUTH_TOKEN) -> None:
        self.client = client
        self.token = token
        self.sent = 0

    def message(self, sender: str, body: str, sid: str | None = None) -> dict[str, str]:
        self.sent += 1
        sid = sid or f"SM{self.sent:032x}"
        return {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "SAN FRANCISCO",
            "FromZip": "94103",
            "SmsSid": sid,
            "FromState": "CA",
            "SmsStatus": "received",
            "FromCity": "SAN FRANCISCO",
            "Body": body,
            "FromCountry": "US",
            "To": OURS,
            "ToZip": "94105",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": "AC123",
            "From": sender,
            "ApiVersion": "2010-04-01",
        }

    async def post(
        self, form: dict[str, str], signature: str | None = None, path: str = "/v1/twilio/sms"
    ) -> httpx.Response:
        if signature is None:
            signature = twilio_signature(self.token, PUBLIC + path, form)
        return await self.client.post(
            path,
            content=urlencode(form).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded; charset=UTF-8",
                "x-twilio-signature": signature,
                "i-twilio-idempotency-token": "abc",
            },
        )

    async def reply(self, sender: str, body: str, sid: str | None = None) -> httpx.Response:
        return await self.post(self.message(sender, body, sid))


def said(response: httpx.Response) -> str | None:
    """The text of the TwiML answer's reply message; None if it has none."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    text = response.text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response')
    found = re.search(r"<Message>(.*)</Message>", text, re.S)
    return None if found is None else found.group(1)


def write(
    folder: Path,
    api_base: str,
    public_url: str | None = PUBLIC,
    policy: str = "",
    more_services: Sequence[str] = (),
) -> Config:
    (folder / "token").write_text(AUTH_TOKEN + "\n")
    public = f'public_url = "{public_url}"\n' if public_url else ""
    text = f"""
[daemon]
socket = "pager.sock"
state_dir = "state"

[http]
listen = "127.0.0.1:0"
{public}
[channels.email]
transport = "log"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "{OURS}"
api_base = "{api_base}"
timeout = "5s"
rate_limit = "100/s"
burst = 100

[policies.oncall]
{policy}
[[policies.oncall.levels]]
targets = ["sms:{ALICE}", "sms:{BOB}"]
ack_timeout = "1h"
[[policies.oncall.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "1h"

[services.api]
policy = "oncall"
[services.web]
policy = "oncall"
"""
    text += "".join(f'[services.{name}]\npolicy = "oncall"\n' for name in more_services)
    (folder / "pager.toml").write_text(text)
    return load(folder / "pager.toml")


@asynccontextmanager
async def paging(
    folder: Path,
    public_url: str | None = PUBLIC,
    workers: int | None = 0,
    policy: str = "",
    more_services: Sequence[str] = (),
) -> AsyncIterator[tuple[app.Daemon, Config, HttpServer, Twilio]]:
    """The daemon paging by SMS to a Twilio stand-in, sending in its own process or (`workers`
    other than 0) through delivery worker processes; `policy`, more of the policy's keys;
    `more_services`, services besides api and web, on the same policy."""
    with HttpServer() as sms:
        config = write(folder, sms.url, public_url, policy, more_services)
        running_daemon = running(config, offload=None, delivery_workers=workers)
        async with running_daemon as daemon:  # noqa: SIM117  # the client needs its port
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
                yield daemon, config, sms, Twilio(client)
        # Sent by the daemon's own client, or by the workers' (libcurl).
        assert senders(sms.requests) == {"httpx" if workers == 0 else "curl"}


def texts(sms: HttpServer, to: str) -> list[str]:
    return [r.form()["Body"] for r in sms.requests if r.form()["To"] == to]


async def alert(config: Config, service: str, message: str = "disk full") -> dict[str, Any]:
    async with connect(config.socket) as conn:
        reply = await conn.request("alert", service=service, message=message)
    assert reply["ok"]
    return reply


async def history(config: Config, service: str) -> list[dict[str, Any]]:
    async with connect(config.socket) as conn:
        timeline: list[dict[str, Any]] = (await conn.request("history", service=service))[
            "timeline"
        ]
    return timeline


async def test_a_page_ends_with_its_code_and_the_reply_acknowledges_it(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers) as (_, config, sms, twilio):
            await alert(config, "api", "disk full on db-7")
            await until(lambda: len(sms.requests) == 2, "both pages are sent")
            [page] = texts(sms, ALICE)
            assert page.endswith(" -- Reply 1a to acknowledge, 1c to close")
            assert "disk full on db-7" in page and len(page) <= 160

            assert said(await twilio.reply(ALICE, "1a")) == "Acknowledged api#1"
            incident = (await status(config, "api"))["incident"]
            assert incident["acknowledged_by"] == f"sms:{ALICE}"
            assert incident["next_escalation_at"] is None  # escalation stopped
            ack = [e for e in await history(config, "api") if e.get("event") == "ack"]
            assert ack == [{"at": ack[0]["at"], "event": "ack", "by": f"sms:{ALICE}", "via": "sms"}]
            # Bob was paged too, and answers second: told who was first, nothing changes.
            first = (await status(config, "api"))["incident"]
            assert said(await twilio.reply(BOB, " 1A ")) == (
                f"api#1 was already acknowledged by sms:{ALICE} via sms"
                f" at {first['acknowledged_at']}"
            )
            assert (await status(config, "api"))["incident"]["acknowledged_by"] == f"sms:{ALICE}"
            # Alice again: told her first reply counted, not "Acknowledged" once more.
            assert said(await twilio.reply(ALICE, "1a")) == (
                f"api#1 was already acknowledged by you (via sms) at {first['acknowledged_at']}"
            )


async def test_a_reply_closes_and_codes_are_per_incident_and_rest_once_closed(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers) as (_, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(texts(sms, ALICE)) == 1, "api's page is sent")
            await alert(config, "web")
            await until(lambda: len(texts(sms, ALICE)) == 2, "web's page is sent")
            assert [t.rpartition(" -- ")[2] for t in texts(sms, ALICE)] == [
                "Reply 1a to acknowledge, 1c to close",
                "Reply 2a to acknowledge, 2c to close",
            ]
            assert said(await twilio.reply(ALICE, "2c")) == "Closed web#1"
            assert (await status(config, "web"))["state"] == "healthy"
            [closed] = [e for e in await history(config, "web") if e["event"] == "healthy"]
            assert (closed["by"], closed["via"]) == (f"sms:{ALICE}", "sms")
            assert (await status(config, "api"))["state"] == "unhealthy"
            # A bare letter answers the latest page: web's, closed already.
            assert said(await twilio.reply(ALICE, "ack")) == "web#1 is already closed"
            # web#1 closed: its number rests (an hour), api's is still held.
            await alert(config, "web")
            await until(lambda: len(texts(sms, ALICE)) == 3, "web#2's page is sent")
            assert texts(sms, ALICE)[2].endswith("Reply 3a to acknowledge, 3c to close")
            # A late answer to web#1's page is told it is closed, and does not touch web#2.
            assert said(await twilio.reply(ALICE, "2a")) == "web#1 is already closed"
            assert said(await twilio.reply(ALICE, "3a")) == "Acknowledged web#2"
            assert (await status(config, "api"))["incident"]["acknowledged"] is False


async def test_where_the_policy_keeps_closing_off_pages_no_c_is_offered_or_taken(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    """`allow_resolve = false`: the page offers only "1a", and a "1c" (or a bare "c") sent
    all the same is refused, saying why, and closes nothing; "1a" still acknowledges."""
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers, policy="allow_resolve = false") as (
            _,
            config,
            sms,
            twilio,
        ):
            await alert(config, "api")
            await until(lambda: len(sms.requests) == 2, "both pages are sent")
            [page] = texts(sms, ALICE)
            assert page.endswith(" -- Reply 1a to acknowledge"), page
            for reply in ("1c", "close"):
                assert said(await twilio.reply(ALICE, reply)) == (
                    "api#1 cannot be closed from a page (its policy): nothing changed"
                )
            assert (await status(config, "api"))["state"] == "unhealthy"
            assert [e for e in await history(config, "api") if e["event"] == "healthy"] == []
            assert said(await twilio.reply(ALICE, "1a")) == "Acknowledged api#1"


async def test_a_badly_signed_reply_gets_403_and_no_text_and_changes_nothing(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path) as (daemon, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(sms.requests) == 2, "the pages are sent")
            message = twilio.message(ALICE, "1c")
            wrong_token = twilio_signature("not-the-token", PUBLIC + "/v1/twilio/sms", message)
            elsewhere = twilio_signature(AUTH_TOKEN, "https://evil.example/v1/twilio/sms", message)
            tampered = dict(message, Body="1c", From=BOB)
            signed_for_alice = twilio_signature(AUTH_TOKEN, PUBLIC + "/v1/twilio/sms", message)
            for form, signature in (
                (message, wrong_token),
                (message, elsewhere),
                (message, ""),
                (tampered, signed_for_alice),
            ):
                response = await twilio.post(form, signature)
                assert response.status_code == 403
                assert "<Message>" not in response.text
                assert response.json()["error"]["code"] == "forbidden"
            assert (await status(config, "api"))["state"] == "unhealthy"
            assert (await status(config, "api"))["incident"]["acknowledged"] is False
            samples = metric_samples(await metrics_text(config.socket))
            assert samples['pagerd_http_auth_failures_total{integration_type="twilio"}'] == 4
            # The same message, signed right, goes through: nothing of it was taken before.
            assert said(await twilio.post(message)) == "Closed api#1"
            assert daemon.http is not None


async def test_a_replayed_reply_changes_nothing_twice(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers) as (_, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(texts(sms, ALICE)) == 1, "the page is sent")
            close = twilio.message(ALICE, "1c")
            assert said(await twilio.post(close)) == "Closed api#1"
            # api#2 opens; its page gets code 2 (api#1's code rests for an hour after it closed).
            await alert(config, "api")
            await until(lambda: len(texts(sms, ALICE)) == 2, "api#2's page is sent")
            assert texts(sms, ALICE)[1].endswith("Reply 2a to acknowledge, 2c to close")
            # The captured, signed "1c" sent again (were code 1 api#2's, by then, it would close
            # it): a replay, not answered, and nothing changes.
            replayed = await twilio.post(close)
            assert said(replayed) is None
            assert (await status(config, "api"))["incident"]["id"] == "api#2"


async def test_an_unknown_sender_a_stale_code_and_nonsense_change_nothing_and_say_why(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path) as (_, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(sms.requests) == 2, "the pages are sent")
            assert said(await twilio.reply(STRANGER, "1a")) == (
                "pagerd has sent no page to this number: nothing to answer."
            )
            assert said(await twilio.reply(ALICE, "7a")) == (
                "No page to this number has code 7: nothing changed."
            )
            assert said(await twilio.reply(ALICE, "yes I'm on it")) == (
                "Not understood: reply 1a to acknowledge api#1 (1c to close)."
            )
            await alert(config, "web")
            await until(lambda: len(sms.requests) == 4, "web's pages are sent")
            # The phone's real codes, the latest page first.
            assert said(await twilio.reply(BOB, "help")) == (
                "Not understood: reply 2a to acknowledge web#1, 1a api#1 (2c, 1c to close)."
            )
            assert said(await twilio.reply(STRANGER, "help")) == (
                "Not understood, and no page to this number is open: nothing to answer."
            )
            assert (await status(config, "api"))["incident"]["acknowledged"] is False
            missing = twilio.message(ALICE, "1a")
            del missing["MessageSid"]
            assert (await twilio.post(missing)).status_code == 400


async def test_a_sender_over_its_rate_is_not_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path) as (_, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(sms.requests) == 2, "the pages are sent")
            answers = [said(await twilio.reply(STRANGER, "1a")) for _ in range(7)]
            assert answers[:5] == ["pagerd has sent no page to this number: nothing to answer."] * 5
            assert answers[5:] == [None, None]
            # Another number is not held back by it.
            assert said(await twilio.reply(ALICE, "1a")) == "Acknowledged api#1"
            # Past the rate, "not understood" is not answered either.
            assert said(await twilio.reply(STRANGER, "help")) is None
            # A number is named in the log escaped, whatever Twilio passed on.
            for _ in range(6):
                await twilio.reply("+1\x1b[31m", "1a")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    held = [w for w in warnings if "rate of answers" in w]
    assert [w.rpartition("not texted back: ")[2] for w in held] == [
        "pagerd has sent no page to this number: nothing to answer.",
        "pagerd has sent no page to this number: nothing to answer.",
        "(not understood)",
        "pagerd has sent no page to this number: nothing to answer.",
    ]
    assert all(w.startswith(f"SMS reply from {STRANGER}, over") for w in held[:3]), held
    assert held[3].startswith("SMS reply from +1\\x1b[31m, over"), held
    assert "\x1b" not in caplog.text


async def test_a_storm_s_every_reply_is_taken_and_only_its_answers_are_held_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One phone paged for six incidents answers all six: each reply is signed by Twilio, so
    each is acted on; only the sixth answer is not texted back (over the number's rate), and
    the log says so, naming the number."""
    services = [f"s{i}" for i in range(1, 7)]
    with trio.fail_after(60):
        async with paging(tmp_path, more_services=services) as (_, config, sms, twilio):
            for service in services:
                await alert(config, service)
            await until(lambda: len(texts(sms, ALICE)) == 6, "the six pages are sent")
            answers = [said(await twilio.reply(ALICE, f"{code}a")) for code in range(1, 7)]
            assert answers == [f"Acknowledged s{i}#1" for i in range(1, 6)] + [None]
            for service in services:
                incident = (await status(config, service))["incident"]
                assert incident["acknowledged_by"] == f"sms:{ALICE}", service
            # A close past the rate is done too.
            assert said(await twilio.reply(ALICE, "6c")) is None
            assert (await status(config, "s6"))["state"] == "healthy"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    held = [w for w in warnings if "rate of answers" in w]
    assert len(held) == 2 and all(w.startswith(f"SMS reply from {ALICE} taken,") for w in held)
    assert held[0].endswith("not texted back: Acknowledged s6#1")
    assert held[1].endswith("not texted back: Closed s6#1")


async def test_without_a_public_url_pages_carry_no_code_and_replies_are_off(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path, None, delivery_workers) as (_, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(sms.requests) == 2, "the pages are sent")
            assert texts(sms, ALICE)[0].endswith(" -- ack: pager ack api")
            response = await twilio.reply(ALICE, "1a")
            assert response.status_code == 404
            assert "http.public_url" in response.json()["error"]["message"]


async def test_the_auth_token_reaches_no_log_metric_history_or_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, delivery_workers: int | None
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers) as (_, config, sms, twilio):
            await alert(config, "api")
            await until(lambda: len(sms.requests) == 2, "the pages are sent")
            message = twilio.message(ALICE, "1a")
            for signature in ("bad", None):
                response = await twilio.post(message, signature)
                seen.append(response.text)
            seen.append((await twilio.reply(STRANGER, "1a")).text)
            seen.append(await metrics_text(config.socket))
            seen.append(repr(await history(config, "api")))
            seen.append(repr(await status(config, "api")))
            seen.append((await twilio.client.get("/openapi.json")).text)
    seen.append(caplog.text)
    seen.append((tmp_path / "state" / "pager.db").read_bytes().decode("latin-1"))
    assert seen and not [text for text in seen if AUTH_TOKEN in text]
