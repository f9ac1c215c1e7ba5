"""Acknowledge links, over real HTTP on 127.0.0.1 against the daemon: a GET shows and changes
nothing, the POST from its page acknowledges (or resolves) as the person paged, and every way a
link can be wrong says so and changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from pager.domain import Notify, Target
from pagerd import app
from pagerd.access.keys import SigningKeys
from pagerd.access.links import Link
from pagerd.config import load
from pagerd.main import main
from tests.harness import connect, notifications, settle, until
from tests.http import front, http_config
from tests.servers import HttpServer, SmtpServer
from tests.test_clock import DAY, Machine
from tests.test_templates import email_body, links, running_config

ALICE = "email:alice@example.com"
PUBLIC = 'public_url = "https://pager.example/on-call/"\n'


def config(folder: Path, extra: str = "") -> app.Config:
    return http_config(folder, extra, http=PUBLIC)


def token(daemon: app.Daemon, service: str = "api", by: str = ALICE) -> str:
    """The token the page of `service`'s open incident to `by` carries."""
    incident = daemon.services.state(service).incident
    assert incident is not None and daemon.keys is not None
    return Link(service, incident.number, incident.opened_at, by).token(daemon.keys)


def form(value: str) -> dict[str, str]:
    return {"token": value}


async def history(socket: Path, service: str = "api") -> list[dict[str, object]]:
    async with connect(socket) as conn:
        reply = await conn.request("history", service=service)
    return [e for e in reply["timeline"] if e["event"] in ("ack", "healthy")]


async def alert(socket: Path, service: str = "api") -> None:
    async with connect(socket) as conn:
        assert (await conn.request("alert", service=service, message="p99 > 2s"))["ok"]
    await settle()


def text(response: httpx.Response) -> str:
    """The page's words, without its markup."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.text).split())


async def test_the_get_shows_the_incident_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            link = token(daemon)
            for method in ("GET", "HEAD", "GET"):
                page = await client.request(method, f"/ack/{link}")
                assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.headers["cache-control"] == "no-store"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert "Acknowledge api#1?" in text(page)
            assert "p99 &gt; 2s" in page.text and ALICE in page.text
            assert f'<input type="hidden" name="token" value="{link}">' in page.text
            assert 'action="../ack"' in page.text
            state = daemon.services.state("api").incident
            assert state is not None and not state.acknowledged
            assert await history(cfg.socket) == []


async def test_the_post_acknowledges_as_the_person_paged_via_link_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            link = token(daemon)
            done = await client.post("/ack", data=form(link))
            assert done.status_code == 200
            assert "api#1 is acknowledged, by email:alice@example.com" in text(done)
            (ack,) = await history(cfg.socket)
            assert (ack["by"], ack["via"]) == (ALICE, "link")
            async with connect(cfg.socket) as conn:
                status = await conn.request("status", service="api")
            assert status["incident"]["acknowledged_by"] == ALICE
            assert status["incident"]["acknowledged_via"] == "link"
            # A replay (the button pressed twice, the page reloaded): said, and nothing done.
            again = await client.post("/ack", data=form(link))
            assert again.status_code == 409
            assert (
                "was already acknowledged by email:alice@example.com via link at"
                " 2027-01-15T08:00:00.000Z. Nothing more was done." in text(again)
            )
            shown = await client.get(f"/ack/{link}")
            assert shown.status_code == 200 and "already acknowledged" in text(shown)
            assert "<form" not in shown.text
            assert len(await history(cfg.socket)) == 1


async def test_a_closed_incident_or_a_later_one_is_not_touched(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            first = token(daemon)
            async with connect(cfg.socket) as conn:
                await conn.request("healthy", service="api")
            for response in (
                await client.get(f"/ack/{first}"),
                await client.post("/ack", data=form(first)),
                await client.post("/resolve", data=form(first)),
            ):
                assert response.status_code == 410
                assert "api#1 is closed: this link no longer does anything" in text(response)
            await alert(cfg.socket)  # api#2 is open now: api#1's link still does nothing
            assert (await client.post("/ack", data=form(first))).status_code == 410
            incident = daemon.services.state("api").incident
            assert incident is not None and incident.number == 2 and not incident.acknowledged


async def test_a_token_of_the_same_number_but_another_incident_does_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A database restored from an old backup numbers incidents again: the token names when
    its incident opened too."""
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            assert daemon.keys is not None
            other = Link("api", 1, 1_700_000_000.0, ALICE).token(daemon.keys)
            assert (await client.post("/ack", data=form(other))).status_code == 410
            incident = daemon.services.state("api").incident
            assert incident is not None and not incident.acknowledged


async def test_a_tampered_or_foreign_token_is_refused_in_plain_words(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            link = token(daemon)
            assert daemon.keys is not None
            payload, mac = link.split(".")
            forged = Link("api", 1, 0.0, "email:mallory@example.com").token(
                SigningKeys.load_or_create(tmp_path / "elsewhere")
            )
            for bad in (
                payload + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"),
                payload[:-1] + "." + mac,
                forged,  # signed, but by another pagerd's key
                daemon.keys.token("session", payload.encode()),  # our key, another purpose
                "not-a-token",
            ):
                response = await client.post("/ack", data=form(bad))
                assert response.status_code == 404, bad
                assert "This link is not valid" in text(response)
                assert (await client.get(f"/ack/{bad}")).status_code == 404
            incident = daemon.services.state("api").incident
            assert incident is not None and not incident.acknowledged


async def test_resolve_closes_where_the_policy_allows_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            link = token(daemon)
            page = await client.get(f"/resolve/{link}")
            assert page.status_code == 200 and 'action="../resolve"' in page.text
            done = await client.post("/resolve", data=form(link))
            assert done.status_code == 200 and "api#1 is closed, by" in text(done)
            assert daemon.services.state("api").incident is None
            (closed,) = await history(cfg.socket)
            assert (closed["event"], closed["by"], closed["via"]) == ("healthy", ALICE, "link")


async def test_a_policy_may_keep_resolve_from_links(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    text_ = cfg.path.read_text().replace(
        "[policies.oncall]\n", "[policies.oncall]\nallow_resolve = false\n"
    )
    cfg.path.write_text(text_)
    cfg = load(cfg.path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            link = token(daemon)
            for response in (
                await client.get(f"/resolve/{link}"),
                await client.post("/resolve", data=form(link)),
            ):
                assert response.status_code == 403
                assert "does not let a link close an incident" in text(response)
            assert daemon.services.state("api").incident is not None
            assert (await client.post("/ack", data=form(link))).status_code == 200


async def test_an_ack_that_expires_says_until_when_escalation_stopped(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    cfg.path.write_text(
        cfg.path.read_text().replace(
            "[policies.oncall]\n", '[policies.oncall]\nack_expiry = "4h"\n'
        )
    )
    cfg = load(cfg.path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            done = await client.post("/ack", data=form(token(daemon)))
            assert done.status_code == 200
            assert (
                "api#1 is acknowledged, by email:alice@example.com: escalation stopped until"
                " 12:00 UTC (the acknowledgement expires: policy ack_expiry)."
            ) in text(done)


async def test_an_address_that_keeps_presenting_bad_tokens_is_slowed_down(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(600):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            statuses = [(await client.get(f"/ack/guess{i}")).status_code for i in range(12)]
            assert statuses[:10] == [404] * 10 and statuses[10:] == [429, 429]
            refused = await client.post("/ack", data=form(token(daemon)))
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            await trio.sleep(60)  # the bucket fills again
            assert (await client.post("/ack", data=form(token(daemon)))).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"token": "x"}', 415),
        (None, b"token=x", 415),
        ("application/x-www-form-urlencoded", b"", 400),
        ("application/x-www-form-urlencoded", b"token=a&token=b", 400),
        ("application/x-www-form-urlencoded", b"token=a&x=1", 400),
        ("application/x-www-form-urlencoded", b"token=%ff%fe", 400),
        ("application/x-www-form-urlencoded", "token=é".encode(), 400),
        ("application/x-www-form-urlencoded", b"token", 400),
        ("application/x-www-form-urlencoded", b"token=" + b"A" * 4100, 413),
    ],
)
async def test_a_malformed_form_gets_a_clear_4xx(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    content_type: str | None,
    body: bytes,
    status: int,
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            headers = {} if content_type is None else {"content-type": content_type}
            response = await client.post("/ack", content=body, headers=headers)
            assert response.status_code == status
            assert "Nothing was done" in text(response) or status == 413
            incident = daemon.services.state("api").incident
            assert incident is not None and not incident.acknowledged


async def test_a_rotated_key_signs_new_links_and_the_one_before_still_verifies(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            await alert(cfg.socket)
            before = token(daemon)
            assert main(["rotate-key", "--config", str(cfg.path)]) == 0
            assert "reload pagerd" in capsys.readouterr().out
            assert daemon.keys is not None and Link.open(daemon.keys, before) is not None
            old_keys = daemon.keys
            assert await daemon.reload()  # SIGHUP: the new key is read
            assert daemon.keys.keys[1:] == old_keys.keys[:1]
            after = token(daemon)
            assert after != before
            assert (await client.get(f"/ack/{before}")).status_code == 200
            # Two rotations on, a link signed before both no longer verifies.
            assert main(["rotate-key", "--config", str(cfg.path)]) == 0
            assert await daemon.reload()
            assert (await client.post("/ack", data=form(before))).status_code == 404
            assert (await client.post("/ack", data=form(after))).status_code == 200


async def test_pages_carry_the_links_and_only_with_public_url(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The wording of an email and a Slack page is the daemon's, with its keys and public_url;
    the log channel, standing in for email, writes what the email would say, links and all,
    and for SMS what the SMS would say (no links: SMS is answered by a reply)."""
    cfg = config(tmp_path)
    with trio.fail_after(60):
        async with front(cfg) as (daemon, _):
            await alert(cfg.socket)
            (sent,) = [n for n in notifications(cfg) if n["channel"] == "email"]
            assert f"https://pager.example/on-call/ack/{token(daemon)}" in sent["message"]
            (texted,) = [n for n in notifications(cfg) if n["channel"] == "sms"]
            assert "/ack/" not in texted["message"]
            incident = daemon.services.state("api").incident
            assert incident is not None
            n = Notify("api", 1, 1, 1, Target.parse(ALICE), "down", incident.opened_at)
            body = daemon.wording.body(n)
            ack = re.search(r"https://pager\.example/on-call/ack/(\S+)", body)
            resolve = re.search(r"https://pager\.example/on-call/resolve/(\S+)", body)
            assert ack is not None and resolve is not None
            assert ack.group(1) == resolve.group(1) == token(daemon)
            sms = Notify("api", 1, 1, 1, Target.parse("sms:+14155550100"), "down", 0.0)
            assert "http" not in daemon.wording.sms(sms)


async def test_the_links_of_a_delivered_email_answer_it(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    """The links as they arrive, in an email sent by pagerd in its own process or by one of its
    delivery workers: the resolve link closes the incident, as the person paged, via link."""
    with SmtpServer() as smtp, HttpServer() as hook, trio.fail_after(60):
        cfg = running_config(tmp_path, smtp, hook, "Paging:")
        async with front(cfg, offload=None, delivery_workers=delivery_workers) as (_, client):
            async with connect(cfg.socket) as conn:
                assert (await conn.request("alert", service="api", message="down"))["ok"]
            await until(lambda: smtp.received, "the email")
            sent = links(email_body(smtp, 0))
            shown = await client.get(f"/resolve/{sent['resolve']}")
            assert shown.status_code == 200 and "<form" in shown.text
            done = await client.post("/resolve", data=form(sent["resolve"]))
            assert done.status_code == 200, done.text
            async with connect(cfg.socket) as conn:
                status = await conn.request("status", service="api")
            assert status["state"] == "healthy"
            [closed] = [e for e in await history(cfg.socket) if e["event"] == "healthy"]
            assert (closed["by"], closed["via"]) == (ALICE, "link")
            assert (await client.post("/ack", data=form(sent["ack"]))).status_code == 410


async def test_what_a_client_sent_is_shown_escaped_as_the_console_shows_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """An alert's message and who acknowledged first come from clients: a bidi override or a
    terminal control in them is shown escaped, not obeyed, on the link's pages too."""
    cfg = config(tmp_path)
    evil = "disk \u202efull\x1b[31m <b>x</b>"
    with trio.fail_after(60):
        async with front(cfg) as (daemon, client):
            async with connect(cfg.socket) as conn:
                assert (await conn.request("alert", service="api", message=evil))["ok"]
            await settle()
            link = token(daemon)
            page = await client.get(f"/ack/{link}")
            assert page.status_code == 200
            assert "\u202e" not in page.text and "\x1b" not in page.text
            assert "&lt;b&gt;x&lt;/b&gt;" in page.text and "\\u202e" in page.text
            async with connect(cfg.socket) as conn:
                assert (await conn.request("ack", service="api", by="mallory\u202e"))["ok"]
            told = await client.post("/ack", data=form(link))
            assert told.status_code == 409
            assert "\u202e" not in told.text and "mallory\\u202e" in told.text
            shown = await client.get(f"/ack/{link}")
            assert "\u202e" not in shown.text and "already acknowledged" in text(shown)


class Kept:
    """A transport that keeps what it is handed (the page as the outbox words it: its times on
    the wall clock) and sends nothing."""

    def __init__(self) -> None:
        self.sent: list[Notify] = []

    async def send(self, notification: Notify) -> str | None:
        self.sent.append(notification)
        return None


async def test_a_page_sent_after_a_wall_clock_step_carries_links_that_answer(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The wall clock stepped back a day while pagerd ran: pages show their times on it, and
    their links still name the incident as pagerd holds it (by the time it opened in pagerd's
    own frame, which no step moves), so they answer."""
    cfg = config(tmp_path)
    machine = Machine()
    email = Kept()
    with trio.fail_after(60):
        async with front(cfg, clock=machine.clock(), transports={"email": email}) as (
            daemon,
            client,
        ):
            machine.step = -DAY
            await trio.sleep(1)
            await alert(cfg.socket)
            [page, *_] = [n for n in email.sent if str(n.target) == ALICE]
            incident = daemon.services.state("api").incident
            assert incident is not None and page.opened_at == incident.opened_at - DAY
            sent = re.search(r"/on-call/ack/(\S+)", daemon.wording.body(page))
            assert sent is not None
            shown = await client.get(f"/ack/{sent.group(1)}")
            assert shown.status_code == 200 and "Acknowledge api#1?" in text(shown)
            done = await client.post("/ack", data=form(sent.group(1)))
            assert done.status_code == 200, text(done)
