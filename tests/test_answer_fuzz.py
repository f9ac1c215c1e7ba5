"""The SMS-reply and Slack-button endpoints fed garbage: malformed forms and JSON, bad
encodings, oversized bodies, wrong content types, signed and not. Each gets a clear 4xx (or,
for a signed form Twilio could send, a TwiML answer), and the open incident stays as it was."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode

import httpx
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagerd.config import Config, load
from tests.harness import connect, running, settle
from tests.http import base_url

TOKEN: Final = "fuzz-auth-token-1f2e3d"
SECRET: Final = "fuzz-signing-secret-9a8b7c"
PUBLIC: Final = "https://pager.example.com"
ALICE: Final = "+14155550100"

CONFIG: Final = f"""
[daemon]
socket = "pager.sock"
state_dir = "state"
[http]
listen = "127.0.0.1:0"
workers = 0  # in the daemon's own process: under MockClock
public_url = "{PUBLIC}"
max_body_bytes = 4096
[channels.email]
transport = "log"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "+14155550199"
api_base = "http://127.0.0.1:9"
[channels.slack]
transport = "slack"
signing_secret_file = "signing"
[policies.oncall]
[[policies.oncall.levels]]
targets = ["sms:{ALICE}"]
ack_timeout = "1h"
[services.api]
policy = "oncall"
"""


def write(folder: Path) -> Config:
    (folder / "token").write_text(TOKEN)
    (folder / "signing").write_text(SECRET)
    (folder / "pager.toml").write_text(CONFIG)
    return load(folder / "pager.toml")


texts = st.text(max_size=30)
fields = st.lists(
    st.tuples(
        st.sampled_from(["From", "Body", "MessageSid", "To", "payload", "x"]) | texts,
        texts | st.sampled_from(["1a", "1c", "a", "close", ALICE]),
    ),
    max_size=6,
).map(lambda pairs: [(k, ALICE.replace("0", "9") if v == ALICE else v) for k, v in pairs])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "actions", "value", "user", "x"]), children)
    ),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=300),
    fields.map(lambda pairs: urlencode(pairs).encode()),
    json_values.map(lambda v: urlencode({"payload": json.dumps(v)}).encode()),
    texts.map(lambda t: urlencode({"payload": t}).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just(b"payload=%7B%22type%22%3A%22block_actions%22%7D"),
    st.just(b"From=%FF%FE&Body=1a"),
    st.just(b"x" * 5000),
)
signing = st.sampled_from(["right", "right", "wrong", "none"])
kinds = st.sampled_from(
    ["application/x-www-form-urlencoded", "application/json", "text/plain", None]
)
Sent = tuple[str, bytes, str, str | None]
requests = st.tuples(
    st.sampled_from(["/v1/twilio/sms", "/v1/slack/interactions"]), bodies, signing, kinds
)


def twilio_signature(path: str, body: bytes) -> str:
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        pairs = []
    data = PUBLIC + path + "".join(k + v for k, v in sorted(pairs))
    return base64.b64encode(hmac.digest(TOKEN.encode(), data.encode(), hashlib.sha1)).decode()


def headers(path: str, body: bytes, how: str, kind: str | None, now: float) -> dict[str, str]:
    found = {} if kind is None else {"content-type": kind}
    if how == "none":
        return found
    if path.startswith("/v1/twilio"):
        signature = twilio_signature(path, body) if how == "right" else "AAAA"
        return {**found, "x-twilio-signature": signature}
    stamp = str(int(now))
    mac = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        **found,
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": "v0=" + (mac if how == "right" else "0" * 64),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(requests, min_size=1, max_size=8))
def test_garbage_to_the_answer_endpoints_gets_a_clear_4xx_and_changes_nothing(
    sent: list[Sent],
) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-answer-fuzz-") as folder:
        config = write(Path(folder))
        trio.run(
            partial(_garbage, config, sent), clock=trio.testing.MockClock(autojump_threshold=0)
        )


async def _garbage(config: Config, sent: list[Sent]) -> None:
    with trio.fail_after(3600):
        async with running(config) as daemon:
            async with connect(config.socket) as conn:
                assert (await conn.request("alert", service="api"))["ok"]
            # The page's reply code, as its send (to a dead Twilio) stored it.
            now = daemon.clock.now()
            assert daemon.store.reply_code(ALICE, "api", 1, now) == 1
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
                for path, body, how, kind in sent:
                    response = await client.post(
                        path, content=body, headers=headers(path, body, how, kind, now)
                    )
                    status = response.status_code
                    twiml = response.headers["content-type"].startswith("text/xml")
                    assert 400 <= status < 500 or (status == 200 and twiml), (status, path)
                    if status != 200:
                        error = response.json()["error"]
                        assert error["code"] and error["message"]
                await settle()
                assert (await client.get("/-/healthy")).status_code == 200
            async with connect(config.socket) as conn:
                incident = (await conn.request("status", service="api"))["incident"]
            assert incident["id"] == "api#1" and not incident["acknowledged"]
