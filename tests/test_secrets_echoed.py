"""Providers that echo what they were sent must not leak it: a webhook or Slack endpoint that
answers with its own (secret) path, a provider that echoes the Authorization header. Nothing of
the secrets reaches the history, `pager status` or the log, in any encoding; the reply is capped.
Real loopback servers, real clock."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
import trio

from pagerd.config import load
from pagerd.delivery.redact import MAX_TEXT, Redactor, encodings, url_secrets
from tests.harness import connect, running
from tests.servers import Answer, HttpServer
from tests.test_delivery import wait_until

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-TOKEN-0123456789"
BEARER = "bearer-SECRET-abcdef"
HMAC = "hmac-SECRET-abcdef"


def leaks(text: str) -> list[str]:
    """Every form of a secret found in `text`."""
    forms = {
        "webhook path": "HOOKSECRET",
        "slack path": "SLACKSECRET",
        "twilio token": TOKEN,
        "basic auth": base64.b64encode(f"{SID}:{TOKEN}".encode()).decode(),
        "bearer": BEARER,
        "hmac key": HMAC,
    }
    return [name for name, form in forms.items() if form in text]


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "in-a-worker"])
async def test_secrets_echoed_by_providers_are_redacted_everywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "hmac").write_text(HMAC + "\n")
    with HttpServer() as http, trio.fail_after(30):
        # 404 fails at once; 503 is retried: both replies are stored and logged.
        http.default = Answer(404, echo=True)
        http.answers = [Answer(503, echo=True)] * 3
        (tmp_path / "pager.toml").write_text(
            f"""
[daemon]
socket = "pager.sock"
state_dir = "state"
[channels.sms]
transport = "twilio"
account_sid = "{SID}"
auth_token_file = "token"
sender = "+14155550199"
api_base = "{http.url}"
retry_initial = "100ms"
retry_max = "100ms"
max_attempts = 2
[channels.slack]
transport = "slack"
retry_initial = "100ms"
retry_max = "100ms"
max_attempts = 2
[channels.webhook]
transport = "webhook"
headers = {{ Authorization = "Bearer {BEARER}" }}
secret_file = "hmac"
retry_initial = "100ms"
retry_max = "100ms"
max_attempts = 2
[policies.p]
[[policies.p.levels]]
targets = [
  "sms:+14155550100",
  "slack:{http.url}/services/T0/B0/SLACKSECRET",
  "webhook:{http.url}/hooks/HOOKSECRET?key=HOOKSECRET2",
]
[services.api]
policy = "p"
"""
        )
        config = load(tmp_path / "pager.toml")
        async with running(config, offload=None, delivery_workers=workers):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            status = await wait_until(
                config, "api", lambda notes: all(n["state"] == "failed" for n in notes)
            )
            async with connect(config.socket) as conn:
                history = await conn.request("history", service="api")
                metrics = (await conn.request("metrics"))["text"]
    assert leaks(metrics) == []
    assert len(http.requests) >= 6  # every target tried, some twice
    errors = [n["last_error"] for n in status["incident"]["notifications"]]
    assert all("HTTP 404: Cannot POST" in e for e in errors), errors
    assert sum("Cannot POST <redacted>" in e for e in errors) == 2, errors  # slack, webhook
    assert leaks(json.dumps(status)) == []
    assert leaks(json.dumps(history)) == []
    assert leaks(caplog.text) == []
    assert "HTTP 503" in json.dumps(history)


def test_redaction_covers_encodings_and_caps_the_text() -> None:
    url = "https://hooks.example.com/hooks/T0/SEC%2FRET-123456?token=abcdef123456"
    redactor = Redactor(encodings("s3cret-pass")).with_(url_secrets(url))
    text = (
        "Cannot POST /hooks/T0/SEC%2FRET-123456?token=abcdef123456 "
        f"(decoded: SEC/RET-123456) token abcdef123456 {quote('s3cret-pass')} "
        f"{base64.b64encode(b's3cret-pass').decode()}\x1b[2J\r\nFAKE LOG LINE" + "x" * 1000
    )
    clean = redactor.clean(text)
    for form in ("SEC%2FRET", "SEC/RET", "abcdef123456", "s3cret", "czNjcmV0LXBhc3M"):
        assert form not in clean
    assert "\x1b" not in clean and "\n" not in clean and "\r" not in clean
    assert len(clean) == MAX_TEXT
    assert "hooks.example.com" not in url_secrets(url)
