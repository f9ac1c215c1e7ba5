"""The web console over real HTTP on 127.0.0.1, with httpx as the browser: signing in and out,
sessions, CSRF, read-only users, the trusted proxy, the lock-out, acks and resolves through the
actor, escaping, and no secret in any log line."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import trio
import trio.testing

from pager.protocol import Request
from pagerd import app
from pagerd.access.keys import SigningKeys
from pagerd.access.passwords import hash_password
from pagerd.access.sessions import csrf_token, new_session, session_cookie, sign_in_nonce
from pagerd.config import load
from pagerd.front.http.console.app import Console
from pagerd.front.http.console.forms import FORM
from pagerd.front.http.routes import Call
from pagerd.front.local import answer
from pagerd.storage.offload import inline
from tests.console import LOG_N, PASSWORDS, console_config, csrf_of, sign_in, user_table
from tests.harness import connect, running, settle, steps
from tests.http import base_url, front, http_config


def client_for(daemon: app.Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url(daemon), timeout=30)


async def alert(daemon: app.Daemon, service: str = "api", message: str = "disk full") -> None:
    async with connect(daemon.config.socket) as conn:
        reply = await conn.request("alert", service=service, message=message)
        assert reply["ok"], reply


async def status(daemon: app.Daemon, service: str = "api") -> dict[str, object]:
    async with connect(daemon.config.socket) as conn:
        reply = await conn.request("status", service=service)
    return reply


async def test_signed_out_every_page_leads_to_the_sign_in_form(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await alert(daemon)
            for path in ("/console/", "/console/incidents/api/1"):
                response = await client.get(path)
                assert response.status_code == 303, path
                assert response.headers["location"] == "/console/sign-in"
            assert (await client.get("/")).headers["location"] == "/console/"
            assert (await client.get("/console/live")).status_code == 401
            assert (await client.get("/console/incidents/api/1/live")).status_code == 401
            forged = await client.post("/console/incidents/api/1/ack", data={"csrf": "x"})
            assert forged.status_code == 401
            assert (await status(daemon))["incident"]["acknowledged"] is False  # type: ignore[index]


async def test_the_console_is_off_without_its_table(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(http_config(tmp_path)) as (_, client):
            for path in ("/", "/console/", "/console/sign-in", "/console/static/console.css"):
                response = await client.get(path)
                assert response.status_code == 404
                assert "console is off" in response.text


async def test_sign_in_sets_a_safe_cookie_and_shows_the_services(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            wrong = await sign_in(client, "alice", "not it")
            assert wrong.status_code == 403 and "Wrong user name or password" in wrong.text
            nobody = await sign_in(client, "alice", "")
            assert nobody.status_code == 403
            signed = await sign_in(client, "alice")
            assert signed.status_code == 303 and signed.headers["location"] == "/console/"
            [session] = [
                c for c in signed.headers.get_list("set-cookie") if c.startswith("pagerd_session=")
            ]
            assert "HttpOnly" in session and "SameSite=Lax" in session
            assert "Secure" not in session  # plain HTTP here; see the https test
            page = await client.get("/console/")
            assert page.status_code == 200
            assert "No open incidents" in page.text
            assert 'data-service="api"' in page.text and 'data-service="web"' in page.text
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert page.headers["cache-control"] == "no-store"
            await alert(daemon, message="disk full on db-1")
            live = await client.get("/console/live")
            assert "api#1" in live.text and "disk full on db-1" in live.text
            assert "Acknowledge" in live.text and "level" in live.text.lower()
            assert "email:alice@example.com" in live.text  # who was paged
            assert (await client.get("/console/static/console.js")).status_code == 200


async def test_a_cookie_is_secure_behind_an_https_public_url(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    console_config(tmp_path)
    path = tmp_path / "pager.toml"
    path.write_text(
        path.read_text().replace("[http]\n", '[http]\npublic_url = "https://pager.example"\n', 1)
    )
    config = load(path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            form = await client.get("/console/sign-in")
            assert "Secure" in form.headers["set-cookie"]


async def test_an_ack_goes_through_the_actor_and_stops_escalation(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = console_config(tmp_path)
    with trio.fail_after(7200):  # on the mock clock: the sleep below is of it
        async with front(config) as (daemon, client):
            await sign_in(client, "alice")
            await alert(daemon, message="checkout down")
            page = await client.get("/console/incidents/api/1")
            assert page.status_code == 200 and "checkout down" in page.text
            posted = await client.post(
                "/console/incidents/api/1/ack", data={"csrf": csrf_of(page.text)}
            )
            # POST, redirect, GET: the page after the answer is the incident's own, with what
            # was done; reloading it sends nothing again.
            assert posted.status_code == 303, posted.text
            location = posted.headers["location"]
            assert location.startswith("/console/incidents/api/1?notice=")
            acked = await client.get(location)
            assert acked.status_code == 200, acked.text
            assert "Acknowledged api#1: escalation stopped." in acked.text
            assert "by alice" in acked.text
            assert "Acknowledged api#1" in (await client.get(location)).text  # a reload
            # The notice is this session's: another's, or words made up elsewhere, show nothing.
            async with client_for(daemon) as other:
                await sign_in(other, "alice")
                theirs = await other.get(location)
                assert theirs.status_code == 200 and 'id="notice"' not in theirs.text
                made_up = await client.get("/console/incidents/api/1?notice=Go%20to%20evil.test")
                assert made_up.status_code == 200 and "evil.test" not in made_up.text
            # A GET of the answer's own address (a reload of an old page) is its incident's page.
            again = await client.get("/console/incidents/api/1/ack")
            assert again.status_code == 303
            assert again.headers["location"] == "/console/incidents/api/1"
            incident = (await status(daemon))["incident"]
            assert incident["acknowledged_by"] == "alice"  # type: ignore[index]
            async with connect(config.socket) as conn:
                history = await conn.request("history", service="api")
            [ack] = [e for e in history["timeline"] if e["event"] == "ack"]
            assert (ack["by"], ack["via"]) == ("alice", "console")
            await trio.sleep(3600)  # far past level 1's ack_timeout (5m)
            await settle()
            assert {level for _, _, level, _ in steps(config)} == {1}  # level 2 never paged
            shown = await client.get("/console/incidents/api/1")
            assert "alice via console" in shown.text


async def test_an_ack_that_expires_says_until_when_and_each_round_s_pages_are_told_apart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Under `ack_expiry`, the notice and the card say when escalation starts again; once it
    has, the pages of round 1 and round 2 to the same people are told apart by their round."""
    console_config(tmp_path)
    path = tmp_path / "pager.toml"
    path.write_text(path.read_text().replace("repeat = 0\n", 'repeat = 0\nack_expiry = "1h"\n'))
    config = load(path)
    with trio.fail_after(7200):
        async with front(config) as (daemon, client):
            await sign_in(client, "alice")
            await alert(daemon)
            page = await client.get("/console/incidents/api/1")
            acked = await client.post(
                "/console/incidents/api/1/ack",
                data={"csrf": csrf_of(page.text)},
                follow_redirects=True,
            )
            incident: Any = (await status(daemon))["incident"]
            expires = incident["ack_expires_at"]
            assert expires == incident["next_escalation_at"] and expires is not None
            assert (
                f"Acknowledged api#1: escalation stopped until {expires[11:16]} UTC (the"
                " acknowledgement expires: policy ack_expiry)."
            ) in acked.text
            assert "Ack expires" in acked.text and "escalation restarts at level 1" in acked.text
            assert expires[:19].replace("T", " ") + " UTC" in acked.text
            await trio.sleep(3601)  # the acknowledgement expires: round 2 pages level 1
            await settle()
            shown = await client.get("/console/incidents/api/1")
            paged = re.findall(r'<span class="tag">(level \d, round \d)</span>', shown.text)
            assert "level 1, round 1" in paged and "level 1, round 2" in paged, paged
            assert "Ack expires" not in shown.text


async def test_an_alert_s_link_is_shown_as_a_link_and_only_an_http_one(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The link an alert's message ends with (Alertmanager's generatorURL) is a link on the
    card and the timeline, escaped; anything but http(s) stays text, escaped as text."""
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await sign_in(client, "alice")
            await alert(daemon, message="Disk full <http://prometheus:9090/graph?g0.expr=up&x=1>")
            await alert(daemon, "web", message='down <javascript:alert(1)> <http://x/"a>')
            page = await client.get("/console/incidents/api/1")
            source = (
                '<a class="source" href="http://prometheus:9090/graph?g0.expr=up&amp;x=1"'
                ' rel="noopener noreferrer nofollow" target="_blank">source</a>'
            )
            assert f'<p class="message">Disk full {source}</p>' in page.text
            live = (await client.get("/console/live")).text
            assert source in live
            assert "&lt;javascript:alert(1)&gt; &lt;http://x/&#34;a&gt;" in live
            assert live.count('class="source"') == 1
            async with connect(daemon.config.socket) as conn:
                assert (await conn.request("healthy", service="api"))["ok"]
            closed = await client.get("/console/incidents/api/1")
            assert f'<p class="message">Disk full {source}</p>' in closed.text


async def test_two_acks_at_once_acknowledge_once_and_the_second_is_told_who_was_first(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    users = user_table("alice") + user_table("bob", "bob's password")
    config = console_config(tmp_path, users=users)
    with trio.fail_after(60):
        async with front(config) as (daemon, alice):
            async with client_for(daemon) as bob_client:
                await sign_in(alice, "alice")
                form = await bob_client.get("/console/sign-in")
                await bob_client.post(
                    "/console/sign-in",
                    data={
                        "username": "bob",
                        "password": "bob's password",
                        "csrf": csrf_of(form.text),
                    },
                )
                await alert(daemon)
                pages = {
                    "alice": await alice.get("/console/incidents/api/1"),
                    "bob": await bob_client.get("/console/incidents/api/1"),
                }
                answers: dict[str, str] = {}

                async def ack(name: str, client: httpx.AsyncClient) -> None:
                    response = await client.post(
                        "/console/incidents/api/1/ack", data={"csrf": csrf_of(pages[name].text)}
                    )
                    assert response.status_code == 303
                    answers[name] = (await client.get(response.headers["location"])).text

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ack, "alice", alice)
                    nursery.start_soon(ack, "bob", bob_client)
            first = (await status(daemon))["incident"]["acknowledged_by"]  # type: ignore[index]
            second = "bob" if first == "alice" else "alice"
            assert "Acknowledged api#1: escalation stopped." in answers[first]
            assert f"api#1 was acknowledged already, by {first}, first." in answers[second]


async def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await sign_in(client, "alice")
            await alert(daemon)
            for form in ({}, {"csrf": ""}, {"csrf": "00" * 16}, {"csrf": "zz"}):
                response = await client.post("/console/incidents/api/1/ack", data=form)
                assert response.status_code in (400, 403, 415), form
            # Another session's token is not this one's.
            async with client_for(daemon) as other:
                await sign_in(other, "alice")
                theirs = csrf_of((await other.get("/console/")).text)
            response = await client.post("/console/incidents/api/1/ack", data={"csrf": theirs})
            assert response.status_code == 403
            resolve = await client.post(
                "/console/incidents/api/1/resolve",
                content=b"",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert resolve.status_code == 400 and "missing a field" in resolve.text
            # A sign-in without the form's own token.
            signed = await client.post(
                "/console/sign-in",
                data={"username": "alice", "password": PASSWORDS["alice"], "csrf": "x"},
            )
            assert signed.status_code == 403
            incident = (await status(daemon))["incident"]
            assert incident["acknowledged"] is False  # type: ignore[index]


async def test_a_read_only_user_sees_no_buttons_and_a_forged_post_is_refused(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await sign_in(client, "viewer")
            await alert(daemon)
            page = await client.get("/console/incidents/api/1")
            assert page.status_code == 200 and "read-only" in page.text
            assert "Acknowledge</button>" not in page.text and "Resolve</button>" not in page.text
            token = csrf_of(page.text)  # the sign-out form's: a valid token of this session
            for action in ("ack", "resolve"):
                forged = await client.post(
                    f"/console/incidents/api/1/{action}", data={"csrf": token}
                )
                assert forged.status_code == 403 and "read-only" in forged.text
            assert (await status(daemon))["incident"]["acknowledged"] is False  # type: ignore[index]


async def test_resolve_closes_the_incident_and_a_stale_page_is_told_so(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await sign_in(client, "alice")
            await alert(daemon)
            page = await client.get("/console/incidents/api/1")
            token = csrf_of(page.text)
            done = await client.post(
                "/console/incidents/api/1/resolve", data={"csrf": token}, follow_redirects=True
            )
            assert done.status_code == 200 and "Resolved api#1." in done.text
            assert done.history[0].status_code == 303
            assert (await status(daemon))["state"] == "healthy"
            async with connect(daemon.config.socket) as conn:
                history = await conn.request("history", incident="api#1")
            [healthy] = [e for e in history["timeline"] if e["event"] == "healthy"]
            assert (healthy["by"], healthy["via"]) == ("alice", "console")
            await alert(daemon)  # api#2 opens; the old page's button names api#1
            stale = await client.post("/console/incidents/api/1/ack", data={"csrf": token})
            assert stale.status_code == 409 and "api#1 is closed" in stale.text
            assert (await status(daemon))["incident"]["acknowledged"] is False  # type: ignore[index]
            assert (await client.get("/console/incidents/api/9")).status_code == 404
            assert (await client.get("/console/incidents/nope/1")).status_code == 404
            assert (await client.get("/console/incidents/api/x")).status_code == 404


async def test_what_a_client_sent_is_escaped_on_every_page(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await sign_in(client, "alice")
            evil = '<script>alert(1)</script><img src=x onerror="alert(2)">\u202e'
            await alert(daemon, message=evil)
            async with connect(daemon.config.socket) as conn:
                await conn.request("ack", service="api", by='<b onmouseover="x()">mallory</b>')
            for path in ("/console/", "/console/live", "/console/incidents/api/1"):
                text = (await client.get(path)).text
                assert "<script>alert" not in text and "<img" not in text and "<b " not in text
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path
                assert "\u202e" not in text  # a bidi override is shown escaped, not obeyed


async def test_the_lockout_stops_guessing_per_user_and_per_address(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = console_config(tmp_path, console='max_failed_sign_ins = 3\nlockout = "10m"\n')
    with trio.fail_after(7200):
        async with front(config) as (_, client):
            for _ in range(3):
                assert (await sign_in(client, "alice", "guess")).status_code == 403
            locked = await sign_in(client, "alice")  # the right password, too late
            assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
            assert int(locked.headers["retry-after"]) > 0
            # The viewer's name is not locked; the address is not yet (it has 4 x 3).
            assert (await sign_in(client, "viewer")).status_code == 303
            await trio.sleep(601)
            assert (await sign_in(client, "alice")).status_code == 303
            # Many names from one address (4 x 3 failures): the address waits, for any name.
            for i in range(12):
                assert (await sign_in(client, f"name{i}", "guess")).status_code == 403
            assert (await sign_in(client, "viewer")).status_code == 429


async def test_a_session_ends_when_it_expires_or_the_password_changes(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = console_config(tmp_path, console='session_lifetime = "1h"\n')
    with trio.fail_after(7200):
        async with front(config) as (daemon, client):
            await sign_in(client, "alice")
            assert (await client.get("/console/")).status_code == 200
            await trio.sleep(3601)
            assert (await client.get("/console/")).status_code == 303
            await sign_in(client, "alice")
            assert (await client.get("/console/")).status_code == 200
            path = tmp_path / "pager.toml"
            text = path.read_text()
            old = re.search(r'\[console.users.alice\]\npassword_hash = "([^"]+)"', text)
            assert old is not None
            new = hash_password("a new password", log_n=LOG_N)
            path.write_text(text.replace(old.group(1), new))
            assert await daemon.reload()
            assert (await client.get("/console/")).status_code == 303
            signed_out = await client.post("/console/sign-out", data={"csrf": "x"})
            assert signed_out.status_code == 303


async def test_sign_out_ends_the_cookie(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (_, client):
            await sign_in(client, "alice")
            page = await client.get("/console/")
            out = await client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
            assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
            assert (await client.get("/console/")).status_code == 303


async def test_a_trusted_proxy_names_the_user_and_no_one_else_can(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = console_config(tmp_path, console='trusted_proxies = ["127.0.0.1"]\n')
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            await alert(daemon)
            carol = await client.get("/console/", headers={"x-forwarded-user": "carol"})
            assert carol.status_code == 200 and "carol" in carol.text
            assert "Acknowledge</button>" not in carol.text  # not listed: read-only by default
            client.cookies.clear()
            alice = await client.get(
                "/console/incidents/api/1", headers={"x-forwarded-user": "alice"}
            )
            assert alice.status_code == 200 and "Acknowledge</button>" in alice.text
            posted = await client.post(
                "/console/incidents/api/1/ack",
                data={"csrf": csrf_of(alice.text)},
                headers={"x-forwarded-user": "alice"},
            )
            assert posted.status_code == 303
            acked = await client.get(
                posted.headers["location"], headers={"x-forwarded-user": "alice"}
            )
            assert acked.status_code == 200 and "Acknowledged api#1" in acked.text
            # The proxy's session cookie alone, without the proxy's header, is nobody's.
            assert (await client.get("/console/")).status_code == 303
            bad = await client.get("/console/", headers={"x-forwarded-user": "<script>"})
            assert bad.status_code == 303


async def test_a_header_from_an_untrusted_address_is_ignored(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = console_config(tmp_path, console='trusted_proxies = ["192.0.2.10"]\n')
    with trio.fail_after(60):
        async with front(config) as (_, client):
            response = await client.get("/console/", headers={"x-forwarded-user": "alice"})
            assert response.status_code == 303


async def test_no_password_cookie_token_or_hash_reaches_a_log_line(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = console_config(tmp_path)
    hashes = re.findall(r'password_hash = "([^"]+)"', (tmp_path / "pager.toml").read_text())
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            await sign_in(client, "alice", "a wrong one, typed as the user name too")
            await sign_in(client, "a wrong one, typed as the user name too", "x")
            await sign_in(client, "alice")
            await alert(daemon)
            page = await client.get("/console/incidents/api/1")
            token = csrf_of(page.text)
            await client.post("/console/incidents/api/1/ack", data={"csrf": token})
            cookie = client.cookies["pagerd_session"]
            async with connect(config.socket) as conn:
                history = await conn.request("history", service="api")
                metrics = (await conn.request("metrics"))["text"]
    # pagerd's own lines (the test's client, httpx, logs what it sends at debug level)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pagerd"))
    assert "console: alice signed in" in logged
    secrets = [PASSWORDS["alice"], "a wrong one", token, cookie, cookie.split(".")[1], *hashes]
    for secret in secrets:
        for where in (logged, str(history), metrics):
            assert secret not in where


async def test_a_silence_shows_on_the_overview_and_its_held_incident_says_so(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with front(console_config(tmp_path)) as (daemon, client):
            await sign_in(client, "alice")
            async with connect(daemon.config.socket) as conn:
                reply = await conn.request(
                    "silence", service="api", reason='<i>db</i> "migration"\u202e', by="bob",
                    **{"for": "2h"},
                )  # fmt: skip
                assert reply["ok"], reply
            await alert(daemon, message="db down")
            overview = (await client.get("/console/live")).text
            page = (await client.get("/console/incidents/api/1")).text
    assert "silenced until 2027-01-15 10:00:00 UTC" in overview
    assert "&lt;i&gt;db&lt;/i&gt;" in overview and "<i>db" not in overview
    assert "\u202e" not in overview
    assert "held by a silence" in page  # its next escalation, and the history's entry


@pytest.mark.parametrize("action", ["ack", "resolve"])
async def test_an_answer_names_the_incident_shown_whatever_opens_before_it_is_decided(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, action: str
) -> None:
    """The console reads the service's status, then sends the answer. If the incident it
    showed closes and another opens in between (here: at the moment that read is answered),
    the answer still names the one shown: the actor refuses it, the page says so (409), and
    the new incident is neither acknowledged nor closed."""
    config = console_config(tmp_path)
    with trio.fail_after(60):
        async with running(config) as daemon:
            await alert(daemon)  # api#1
            racing = True

            async def read(request: Request) -> tuple[bytes, str]:
                nonlocal racing
                found = await daemon.server.read(request)
                if racing and request.op == "status" and request.service == "api":
                    racing = False  # api#1 closes and api#2 opens before the answer goes
                    async with connect(config.socket) as conn:
                        assert (await conn.request("healthy", service="api"))["ok"]
                        assert (await conn.request("alert", service="api", message="again"))["ok"]
                return found

            console = Console(
                lambda: daemon.config,
                read,
                lambda service, event, via: answer(daemon.services, service, event, via),
                lambda: daemon.keys,
                daemon.clock.now,
                lambda: False,
                inline,
            )
            assert daemon.config.console is not None
            user = daemon.config.console.users["alice"]
            assert user.password is not None
            session = new_session("alice", daemon.clock.now(), 3600, user.password.encode())
            path = f"/console/incidents/api/1/{action}"
            [route] = [
                r
                for r in console.routes()
                if (r.method, r.pattern) == ("POST", path.replace("api/1", "{service}/{number}"))
            ]
            call = Call(
                "POST",
                path,
                {"service": "api", "number": "1"},
                {
                    "cookie": f"pagerd_session={session_cookie(daemon.keys, session)}",
                    "content-type": "application/x-www-form-urlencoded",
                },
                f"csrf={csrf_token(daemon.keys, session.id)}".encode(),
                address="127.0.0.1",
            )
            response = await route.handler(call)
            assert not racing  # the race did happen between the read and the answer
            assert response.status == 409, response.body.decode()
            assert f"api#1 is closed: nothing to {action}." in response.body.decode()
            now = await status(daemon)
            assert now["state"] == "unhealthy"
            assert now["incident"]["id"] == "api#2"  # type: ignore[index]
            assert now["incident"]["acknowledged"] is False  # type: ignore[index]


async def test_concurrent_guesses_get_no_more_than_the_allowance(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Guesses sent at once all arrive before any password check ends (each takes a tenth of a
    second, off the loop): each is counted as a failure when it is let through, not when its
    check ends, so no more than `max_failed_sign_ins` are checked; the right password among
    them, let through, is taken back and signs in."""
    config = console_config(tmp_path, console='max_failed_sign_ins = 3\nlockout = "10m"\n')
    keys = SigningKeys((b"k" * 32,))

    async def read(request: Request) -> tuple[bytes, str]:
        raise AssertionError("a sign-in reads nothing")

    async def answering(service: str, event: Any, via: str) -> tuple[bytes, str]:
        raise AssertionError("a sign-in answers nothing")

    console = Console(
        lambda: config, read, answering, lambda: keys, trio.current_time, lambda: False, inline
    )
    [route] = [r for r in console.routes() if (r.method, r.pattern) == ("POST", "/console/sign-in")]

    def guess(password: str) -> Call:
        cookie, token = sign_in_nonce(keys)
        body = urlencode({"username": "alice", "password": password, "csrf": token})
        return Call(
            "POST",
            "/console/sign-in",
            {},
            {"cookie": f"pagerd_sign_in={cookie}", "content-type": FORM},
            body.encode(),
            address="192.0.2.7",
        )

    async def statuses(passwords: list[str]) -> list[int]:
        found: list[int] = [0] * len(passwords)

        async def one(i: int) -> None:
            found[i] = (await route.handler(guess(passwords[i]))).status

        async with trio.open_nursery() as nursery:
            for i in range(len(passwords)):
                nursery.start_soon(one, i)
        return found

    with trio.fail_after(7200):
        wrong = await statuses(["guess"] * 10)
        assert sorted(wrong) == [403] * 3 + [429] * 7
        await trio.sleep(601)  # the lock-out is over
        # Two wrong and the right one at once, the whole allowance: all three let through, the
        # right one signs in and is taken back (whichever was counted last, and locked the
        # name, the name is not locked out by an attempt that succeeded).
        mixed = await statuses(["guess", PASSWORDS["alice"], "guess"])
        assert sorted(mixed) == [303, 403, 403]
        again = await statuses([PASSWORDS["alice"]])
        assert again == [303]
