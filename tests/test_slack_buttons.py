"""Slack buttons end to end: pages posted through a Slack app (`chat.postMessage`) or an
incoming webhook to a Slack-shaped HTTP server on loopback, which records every call; a click
posted to pagerd's interactivity endpoint as Slack documents it (a `block_actions` payload,
signed v0 as Slack's docs say, written from them, not from pagerd's verifier); the message
updated through the click's `response_url`.

On the real clock: the Slack stand-in is a real server in a thread (see test_sms_replies)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import pytest
import trio

from pagerd import app
from pagerd.access.keys import SigningKeys
from pagerd.config import Config, load
from pagerd.delivery.transports.slack import BUTTON_PURPOSE
from tests.harness import connect, errors_of, metric_samples, metrics_text, running, until
from tests.http import base_url
from tests.http_clients import senders
from tests.servers import Answer, HttpServer, Request

BOT_TOKEN: Final = "xoxb-17-bot-token-4f1c9e"
SIGNING_SECRET: Final = "8f742231b10e8888abcd99edabcd00d1"
OPS: Final = "C0OPS1234"
HOOK_PATH: Final = "/hooks/T0001/B0001/abcdefghijklmnop"


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """What Slack puts in X-Slack-Signature, as its docs say ("Verifying requests from Slack"):
    the version `v0`, the X-Slack-Request-Timestamp and the raw body joined with colons into a
    basestring, hashed with HMAC-SHA256 keyed by the app's signing secret, hex, after `v0=`."""
    basestring = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(signing_secret.encode(), basestring, hashlib.sha256).hexdigest()


def test_the_slack_client_signs_slack_s_documented_example() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397"
        b"700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14"
        b"d10d2c447fce8b6703c"
    )
    assert slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


class Slack:
    """Slack's side of a click: the `block_actions` payload it documents, form-encoded in one
    `payload` field, signed with the app's signing secret at a timestamp of pagerd's clock."""

    def __init__(self, client: httpx.AsyncClient, daemon: app.Daemon, api: HttpServer) -> None:
        self.client = client
        self.daemon = daemon
        self.api = api

    def payload(self, page: dict[str, Any], action: str, user: str) -> dict[str, Any]:
        [button] = [
            b for block in page["blocks"] if block["type"] == "actions"
            for b in block["elements"] if b["action_id"] == action
        ]  # fmt: skip
        return {
            "type": "block_actions",
            "user": {"id": f"U0{user.upper()}", "username": user, "name": user, "team_id": "T0001"},
            "api_app_id": "A0001",
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": "1700000000.000100",
                "channel_id": OPS,
                "is_ephemeral": False,
            },
            "trigger_id": "1234.5678.abcd",
            "team": {"id": "T0001", "domain": "example"},
            "channel": {"id": OPS, "name": "ops"},
            "message": {
                "type": "message",
                "text": page["text"],
                "ts": "1700000000.000100",
                "blocks": page["blocks"],
            },
            "response_url": f"{self.api.url}/actions/T0001/1/{user}",
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": "pagerd",
                    "text": button["text"],
                    "value": button["value"],
                    "style": button["style"],
                    "type": "button",
                    "action_ts": "1700000001.000200",
                }
            ],
        }

    async def post(
        self,
        payload: dict[str, Any] | bytes,
        age: float = 0.0,
        secret: str = SIGNING_SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        body = (
            payload
            if isinstance(payload, bytes)
            else urlencode({"payload": json.dumps(payload)}).encode()
        )
        timestamp = str(int(self.daemon.clock.now() - age))
        return await self.client.post(
            "/v1/slack/interactions",
            content=body,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-slack-request-timestamp": timestamp,
                "x-slack-signature": signature or slack_signature(secret, timestamp, body),
            },
        )

    async def click(self, page: dict[str, Any], action: str, user: str) -> httpx.Response:
        return await self.post(self.payload(page, action, user))


def write(folder: Path, api: str, target: str, app_keys: bool = True, policy: str = "") -> Config:
    (folder / "pager.toml").write_text(config_text(folder, api, target, app_keys, policy))
    return load(folder / "pager.toml")


def config_text(
    folder: Path, api: str, target: str, app_keys: bool = True, policy: str = ""
) -> str:
    (folder / "bot").write_text(BOT_TOKEN + "\n")
    (folder / "signing").write_text(SIGNING_SECRET + "\n")
    keys = (
        'bot_token_file = "bot"\nsigning_secret_file = "signing"\nchannel = "#ops"\n'
        if app_keys
        else ""
    )
    text = f"""
[daemon]
socket = "pager.sock"
state_dir = "state"

[http]
listen = "127.0.0.1:0"

[channels.email]
transport = "log"
[channels.slack]
transport = "slack"
{keys}api_base = "{api}/api"
timeout = "5s"
rate_limit = "100/s"
burst = 100

[policies.oncall]
{policy}
[[policies.oncall.levels]]
targets = ["{target}"]
ack_timeout = "1h"
[[policies.oncall.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "1h"

[services.api]
policy = "oncall"
"""
    return text


@asynccontextmanager
async def paging(
    folder: Path, target: str = "slack:app", workers: int | None = 0, policy: str = ""
) -> AsyncIterator[tuple[app.Daemon, Config, HttpServer, Slack]]:
    """The daemon paging a Slack stand-in, sending in its own process or (`workers` other than
    0) through delivery worker processes; `policy`, more of the policy's keys."""
    with HttpServer() as api:
        api.default = Answer(200, {"ok": True, "channel": OPS, "ts": "1700000000.000100"})
        config = write(folder, api.url, target.replace("API", api.url), policy=policy)
        running_daemon = running(config, offload=None, delivery_workers=workers)
        async with running_daemon as daemon:  # noqa: SIM117  # the client needs its port
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
                yield daemon, config, api, Slack(client, daemon, api)
        # Sent by the daemon's own client, or by the workers' (libcurl).
        pages = [r for r in api.requests if not r.path.startswith("/actions/")]  # not updates
        assert senders(pages) == {"httpx" if workers == 0 else "curl"}


def calls(api: HttpServer, prefix: str) -> list[Request]:
    return [r for r in api.requests if r.path.startswith(prefix)]


async def alert(config: Config) -> None:
    async with connect(config.socket) as conn:
        assert (await conn.request("alert", service="api", message="disk <!channel> full"))["ok"]


async def status(config: Config) -> dict[str, Any]:
    async with connect(config.socket) as conn:
        return await conn.request("status", service="api")


async def test_an_app_page_has_buttons_and_a_click_acknowledges_and_updates_it(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers) as (_, config, api, slack):
            await alert(config)
            await until(lambda: calls(api, "/api/chat.postMessage"), "the page is posted")
            [posted] = calls(api, "/api/chat.postMessage")
            assert posted.headers["authorization"] == f"Bearer {BOT_TOKEN}"
            page = posted.json()
            assert page["channel"] == "#ops"
            assert "disk &lt;!channel&gt; full" in page["text"]  # no mention from an alert
            [actions] = [b for b in page["blocks"] if b["type"] == "actions"]
            assert [(b["action_id"], b["text"]["text"]) for b in actions["elements"]] == [
                ("ack", "Acknowledge"),
                ("close", "Resolve"),
            ]

            response = await slack.click(page, "ack", "alice")
            assert response.status_code == 200
            incident = (await status(config))["incident"]
            assert incident["acknowledged_by"] == "slack:@alice"
            assert incident["next_escalation_at"] is None
            async with connect(config.socket) as conn:
                timeline = (await conn.request("history", service="api"))["timeline"]
            assert [e.get("via") for e in timeline if e["event"] == "ack"] == ["slack"]
            [update] = calls(api, "/actions/T0001/1/alice")
            replaced = update.json()
            assert replaced["replace_original"] is True
            assert replaced["text"].endswith("\nAcknowledged api#1 by @alice")
            assert not [b for b in replaced["blocks"] if b["type"] == "actions"]

            # Bob clicks the same page's button afterwards: told who was first.
            assert (await slack.click(page, "ack", "bob")).status_code == 200
            [update] = calls(api, "/actions/T0001/1/bob")
            assert update.json()["text"].endswith(
                "\napi#1 was already acknowledged by slack:@alice via slack"
                f" at {incident['acknowledged_at']}"
            )
            # Alice clicks again (the page of a later round, say): told her first one counted.
            assert (await slack.click(page, "ack", "alice")).status_code == 200
            again = calls(api, "/actions/T0001/1/alice")[1].json()
            assert again["text"].endswith(
                "\napi#1 was already acknowledged by @alice (via slack)"
                f" at {incident['acknowledged_at']}"
            )
            assert (await status(config))["incident"]["acknowledged_at"] == (
                incident["acknowledged_at"]
            )


async def test_an_incoming_webhook_page_has_buttons_and_resolve_closes(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    target = f"slack:API{HOOK_PATH}"
    with trio.fail_after(60):
        async with paging(tmp_path, target, delivery_workers) as (_, config, api, slack):
            await alert(config)
            await until(lambda: calls(api, HOOK_PATH), "the page is posted to the hook")
            page = calls(api, HOOK_PATH)[0].json()
            assert (await slack.click(page, "close", "alice")).status_code == 200
            assert (await status(config))["state"] == "healthy"
            async with connect(config.socket) as conn:
                timeline = (await conn.request("history", incident="api#1"))["timeline"]
            [closed] = [e for e in timeline if e["event"] == "healthy"]
            assert (closed["by"], closed["via"]) == ("slack:@alice", "slack")
            assert (
                calls(api, "/actions/T0001/1/alice")[0]
                .json()["text"]
                .endswith("\nClosed api#1 by @alice")
            )
            # The incident is closed: its buttons answer nothing more, and say so.
            await alert(config)  # api#2 opens
            assert (await slack.click(page, "ack", "bob")).status_code == 200
            assert (
                calls(api, "/actions/T0001/1/bob")[0]
                .json()["text"]
                .endswith("\napi#1 is already closed")
            )
            assert (await status(config))["incident"]["acknowledged"] is False


async def test_where_the_policy_keeps_closing_off_pages_there_is_no_resolve_button(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    """`allow_resolve = false`: the page has Acknowledge alone, and a Resolve click all the
    same (a button pagerd signed, from a page sent before the policy changed) closes nothing:
    the one who clicked is told why, and the page keeps its Acknowledge button."""
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers, policy="allow_resolve = false") as (
            daemon,
            config,
            api,
            slack,
        ):
            await alert(config)
            await until(lambda: calls(api, "/api/chat.postMessage"), "the page is posted")
            page = calls(api, "/api/chat.postMessage")[0].json()
            [actions] = [b for b in page["blocks"] if b["type"] == "actions"]
            assert [b["action_id"] for b in actions["elements"]] == ["ack"]
            ack = slack.payload(page, "ack", "alice")
            value = daemon.keys.token(BUTTON_PURPOSE, b"close\napi\n1")
            close = dict(ack, actions=[dict(ack["actions"][0], action_id="close", value=value)])
            assert (await slack.post(close)).status_code == 200
            assert (await status(config))["state"] == "unhealthy"
            [told] = calls(api, "/actions/T0001/1/alice")
            assert told.json() == {
                "replace_original": False,
                "response_type": "ephemeral",
                "text": "api#1 cannot be closed from a page (its policy): nothing changed",
            }
            assert (await slack.click(page, "ack", "alice")).status_code == 200
            assert (await status(config))["incident"]["acknowledged_by"] == "slack:@alice"


async def test_stale_badly_signed_and_forged_clicks_change_nothing(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with paging(tmp_path) as (daemon, config, api, slack):
            await alert(config)
            await until(lambda: calls(api, "/api/chat.postMessage"), "the page is posted")
            page = calls(api, "/api/chat.postMessage")[0].json()
            good = slack.payload(page, "close", "mallory")
            assert (await slack.post(good, age=6 * 60)).status_code == 403  # older than 5 min
            assert (await slack.post(good, age=-6 * 60)).status_code == 403  # from the future
            assert (await slack.post(good, secret="not-the-secret")).status_code == 403
            assert (await slack.post(good, signature="v0=" + "0" * 64)).status_code == 403
            # A value pagerd did not sign: made with another key, or pagerd's one altered.
            other = SigningKeys((b"\x01" * 32,)).token(BUTTON_PURPOSE, b"close\napi\n1")
            value = good["actions"][0]["value"]
            for forged in (other, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"), "api#1"):
                payload = dict(good, actions=[dict(good["actions"][0], value=forged)])
                response = await slack.post(payload)
                assert response.status_code == 400
                assert response.json()["error"]["message"] == "this button is not one of pagerd's"
            assert (await status(config))["state"] == "unhealthy"
            assert not calls(api, "/actions/")
            samples = metric_samples(await metrics_text(config.socket))
            assert samples['pagerd_http_auth_failures_total{integration_type="slack"}'] == 4
            assert daemon.http is not None


async def test_without_a_signing_secret_pages_have_no_buttons_and_clicks_are_404(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    with HttpServer() as api, trio.fail_after(60):
        config = write(tmp_path, api.url, f"slack:{api.url}{HOOK_PATH}", app_keys=False)
        async with running(config, offload=None, delivery_workers=delivery_workers) as daemon:
            await alert(config)
            await until(lambda: calls(api, HOOK_PATH), "the page is posted")
            assert "blocks" not in calls(api, HOOK_PATH)[0].json()
            async with httpx.AsyncClient(base_url=base_url(daemon)) as client:
                response = await client.post("/v1/slack/interactions", content=b"payload=%7B%7D")
            assert response.status_code == 404


def test_slack_app_targets_need_the_app_s_keys(tmp_path: Path) -> None:
    text = config_text(tmp_path, "https://slack.example", "slack:app", app_keys=False)
    assert errors_of(tmp_path, text) == [
        "policies.oncall.levels[0].targets[0]: slack:app needs a Slack app: "
        "channels.slack.bot_token_file (or _credential) and channels.slack.channel"
    ]
    half = text.replace('api_base = "', 'bot_token_file = "bot"\napi_base = "')
    assert errors_of(tmp_path, half) == [
        "channels.slack.channel: a Slack app's bot_token and its channel go together"
    ]


async def test_the_bot_token_and_signing_secret_reach_no_log_metric_history_or_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, delivery_workers: int | None
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with trio.fail_after(60):
        async with paging(tmp_path, workers=delivery_workers) as (_, config, api, slack):
            api.answers.append(Answer(500, {"ok": False, "error": BOT_TOKEN}))
            await alert(config)
            await until(lambda: len(calls(api, "/api/chat.postMessage")) >= 2, "a retry")
            page = calls(api, "/api/chat.postMessage")[-1].json()
            good = slack.payload(page, "ack", "alice")
            seen.append((await slack.post(good, secret="wrong")).text)
            seen.append((await slack.post(b"payload=%7B")).text)
            api.answers.append(Answer(500, {"echo": SIGNING_SECRET}))
            seen.append((await slack.post(good)).text)
            seen.append(await metrics_text(config.socket))
            seen.append(repr(await status(config)))
            async with connect(config.socket) as conn:
                seen.append(repr(await conn.request("history", service="api")))
    seen.append(caplog.text)
    seen.append((tmp_path / "state" / "pager.db").read_bytes().decode("latin-1"))
    leaked = [t for t in seen if BOT_TOKEN in t or SIGNING_SECRET in t]
    assert len(seen) == 8 and not leaked


def test_a_person_s_slack_app_needs_the_app_s_keys_too(tmp_path: Path) -> None:
    text = config_text(tmp_path, "https://slack.example", "person:alice", app_keys=False)
    text += '\n[people.alice]\nslack = "app"\n'
    assert errors_of(tmp_path, text) == [
        "people.alice.slack: slack:app needs a Slack app: "
        "channels.slack.bot_token_file (or _credential) and channels.slack.channel"
    ]
    keyed = config_text(tmp_path, "https://slack.example", "person:alice")
    (tmp_path / "pager.toml").write_text(keyed + '\n[people.alice]\nslack = "app"\n')
    (alice,) = load(tmp_path / "pager.toml").people["alice"].contacts
    assert str(alice) == "slack:app"
