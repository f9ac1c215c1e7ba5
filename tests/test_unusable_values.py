"""Values that look right but cannot be used are refused when the config is loaded (so
`--check` and a reload name them), and what still reaches a transport (an older database's row)
fails for good with a reason, never retried for hours as an "internal error"."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from pager.domain import Notify, Target
from pager.ports import PermanentError
from pagerd.config import ConfigError, load
from pagerd.config.channels import WebhookSettings
from pagerd.delivery.transports.webhook import WebhookTransport
from tests.http_clients import open_client

LONG_LABEL = "a" * 70  # a DNS label is at most 63 characters: no IDNA encoding exists

BASE = """
[daemon]
socket = "pager.sock"
state_dir = "state"
keep_history = "{keep}"

[channels.email]
transport = "smtp"
host = "{smtp_host}"
sender = "pager@example.com"
[channels.webhook]
transport = "webhook"
headers = {{ {header} = "{header_value}" }}

[policies.p]
[[policies.p.levels]]
targets = ["{email}", "webhook:{url}"]
ack_timeout = "{ack}"

[services.api]
policy = "p"
"""

GOOD = {
    "keep": "3650d",
    "smtp_host": "smtp.example.com",
    "header": "Authorization",
    "header_value": "Bearer t0ken-SECRET",
    "email": "email:jürgen@example.com",
    "url": "https://hooks.bücher.example/SECRETPATH",
    "ack": "3650d",
}


def errors_of(tmp_path: Path, **changes: str) -> list[str]:
    path = tmp_path / "pager.toml"
    path.write_text(BASE.format(**{**GOOD, **changes}))
    try:
        load(path)
    except ConfigError as exc:
        return exc.errors
    return []


def test_the_good_values_load(tmp_path: Path) -> None:
    """Ten years at most, non-ASCII mailboxes (SMTPUTF8) and international host names (IDNA)."""
    assert errors_of(tmp_path) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"ack": "3000000d"},
            "policies.p.levels[0].ack_timeout: a duration must be at most 3650d (ten years)",
        ),
        ({"keep": "3651d"}, "daemon.keep_history: a duration must be at most 3650d"),
        (
            {"url": f"https://{LONG_LABEL}.example/SECRETPATH"},
            "policies.p.levels[0].targets[1]: not a usable URL: its host is not a valid host name",
        ),
        (
            {"url": "https://☃.example/SECRETPATH"},
            "policies.p.levels[0].targets[1]: not a usable URL",
        ),
        (
            {"email": f"email:alice@{LONG_LABEL}.example"},
            "policies.p.levels[0].targets[0]: not a valid host name",
        ),
        ({"smtp_host": f"{LONG_LABEL}.example"}, "channels.email.host: not a valid host name"),
        (
            {"header_value": "Bearer t0kén-SECRET"},
            "channels.webhook.headers.Authorization: a header value is printable ASCII",
        ),
        ({"header": '"X Token"'}, 'channels.webhook.headers."X Token": not a valid HTTP header'),
    ],
)
def test_unusable_values_are_refused_with_their_key_path(
    tmp_path: Path, change: dict[str, str], error: str
) -> None:
    found = errors_of(tmp_path, **change)
    assert any(e.startswith(error) for e in found), found
    assert "SECRET" not in "\n".join(found)


def notify(url: str) -> Notify:
    return Notify("api", 1, 1, 1, Target("webhook", url), "down", 0.0)


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        (f"http://{LONG_LABEL}.example/SECRETPATH", {}),
        ("http://☃.example/SECRETPATH", {}),
        ("http://127.0.0.1:9/SECRETPATH", {"Authorization": "Bearer t0kén-SECRET"}),
    ],
)
@pytest.mark.usefixtures("either_client")
async def test_what_cannot_be_encoded_fails_for_good_without_quoting_it(
    url: str, headers: dict[str, str]
) -> None:
    client = open_client(5.0, 1, None)
    try:
        transport = WebhookTransport(WebhookSettings(headers=headers), client)
        with trio.fail_after(10), pytest.raises(PermanentError) as caught:
            await transport.send(notify(url))
    finally:
        await client.aclose()
    assert "SECRET" not in caught.value.reason


async def test_a_webhook_to_an_international_host_is_sent_with_an_ascii_idempotency_key() -> None:
    """The notification id names the target's host, which may be non-ASCII: the header carries
    it percent-encoded, the host goes IDNA-encoded. (No loopback name resolves to an IDNA host,
    so httpx's own in-process transport stands in for the network.)"""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        transport = WebhookTransport(WebhookSettings(), client)
        with trio.fail_after(10):
            await transport.send(notify("https://hooks.bücher.example/SECRETPATH"))
    (request,) = seen
    assert request.url.host == "hooks.xn--bcher-kva.example"
    key = request.headers["idempotency-key"]
    assert key.isascii() and "b%C3%BCcher" in key


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("concurrency = 1000000", "channels.webhook.concurrency: must be at most 256"),
        ("burst = 1000000000", "channels.webhook.burst: must be at most 10000"),
    ],
)
def test_counts_that_would_exhaust_the_daemon_are_refused(
    tmp_path: Path, setting: str, error: str
) -> None:
    text = BASE.format(**GOOD).replace('transport = "webhook"', f'transport = "webhook"\n{setting}')
    (tmp_path / "pager.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "pager.toml")
    assert caught.value.errors == [error]


@pytest.mark.parametrize("port", [0, 65536, 1000000])
def test_an_smtp_port_out_of_range_is_refused(tmp_path: Path, port: int) -> None:
    text = BASE.format(**GOOD).replace('transport = "smtp"', f'transport = "smtp"\nport = {port}')
    (tmp_path / "pager.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "pager.toml")
    assert caught.value.errors == ["channels.email.port: must be 1 to 65535"]
