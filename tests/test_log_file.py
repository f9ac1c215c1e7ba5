"""The `log` transport's file, which the README tells people to `cat`: whatever an alert said,
each line is the exact JSON of the notification and holds no character that is not printable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Final

import trio
import trio.testing

from pager.domain import Notify, Target
from pager.messages import payload
from pagerd.access.links import Link
from pagerd.config import load
from pagerd.delivery.transports.log import LogTransport
from pagerd.storage.offload import inline
from pagerd.timing.clock import Clock
from tests.harness import T0, connect, notifications, running, settle

ROOT: Final = Path(__file__).resolve().parent.parent

# C0 (ESC, BEL), DEL, C1 (NEL, CSI), bidi overrides and isolates, line and paragraph separators,
# a zero-width joiner's kin, a no-break space, an unassigned code point and a private one.
HOSTILE = (
    "a\x1b]0;pwned\x07b\x7fc\x85d\x9b31me\u202eevil\u202cf\u2066g\u2069h\u2028i\u2029"
    "j\u200bk\u00a0l\U000e0001m\U0010ffff"
)
KEPT = "é ß 漢字 🚨"  # printable, however far from ASCII: written as it is


async def test_every_unprintable_character_is_escaped_and_the_line_is_the_exact_json(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notifications.jsonl"
    transport = LogTransport(path, inline, Clock(T0))
    message = HOSTILE + KEPT
    n = Notify("api", 1, 1, 1, Target("sms", "+14155550100"), message, T0)
    with trio.fail_after(10):
        await transport.send(n)
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    text = data.decode()
    assert all(c.isprintable() for c in text[:-1]), [c for c in text if not c.isprintable()]
    assert KEPT in text
    written = json.loads(text)
    assert written["alert"] == message
    assert written["message"].startswith("[pager] api level 1: ")
    assert written["person"] is None and written["via"] is None  # a plain address


async def test_a_resolved_page_says_who_and_how_in_the_file_and_in_the_webhook_body(
    tmp_path: Path,
) -> None:
    """`person` and `via`, as the templates have them: who a `schedule:` or `person:` target was
    resolved to, and how; in each line of the file and in a webhook's documented body."""
    path = tmp_path / "notifications.jsonl"
    transport = LogTransport(path, inline, Clock(T0))
    sms = Target("sms", "+14155550100")
    via = "schedule:payments-primary → alice"
    paged = Notify("api", 1, 1, 1, sms, "disk full", T0, via=via)
    by_name = Notify("api", 1, 2, 1, sms, "disk full", T0, via="person:bob")
    with trio.fail_after(10):
        await transport.send(paged)
        await transport.send(by_name)
    first, second = map(json.loads, path.read_text().splitlines())
    assert (first["person"], first["via"]) == ("alice", via)
    assert (second["person"], second["via"]) == ("bob", "person:bob")
    assert (payload(paged)["person"], payload(paged)["via"]) == ("alice", via)
    plain = Notify("api", 1, 1, 1, sms, "disk full", T0)
    assert (payload(plain)["person"], payload(plain)["via"]) == (None, None)


TOUR_EXTRA: Final = """
[http]
listen = "127.0.0.1:0"
workers = 0
public_url = "https://pager.example.com"

[templates]
sms = "{{ service }} L{{ level }}: {{ message }} -- {{ reply_hint or 'ack: ' ~ ack_command }}"
email_subject = "[pager] {{ incident }} level {{ level }}: {{ message }}"
"""


async def test_the_quick_start_s_log_says_what_each_channel_would(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The README's tour config with `public_url` and `[templates]` (as docs/answering.md
    shows them): the log, standing in for email and SMS, writes what each would say, the
    config's templates and the email's links included. Every other field is as it was."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    path = tmp_path / "config" / "pager.example.toml"
    path.write_text(path.read_text() + TOUR_EXTRA)
    config = load(path)
    with trio.fail_after(60):
        async with running(config) as daemon, connect(config.socket) as conn:
            reply = await conn.request(
                "alert", service="payments-api", message="p99 latency over 2s"
            )
            assert reply["ok"], reply
            await settle()
            incident = daemon.services.state("payments-api").incident
            assert incident is not None and daemon.keys is not None
    written = {n["channel"]: n for n in notifications(config)}
    assert set(written) == {"email", "sms"}
    sms, email = written["sms"], written["email"]
    assert sms["message"] == "payments-api L1: p99 latency over 2s -- ack: pager ack payments-api"
    subject, blank, body = email["message"].partition("\n\n")
    assert blank and subject == "[pager] payments-api#1 level 1: p99 latency over 2s"
    token = Link("payments-api", 1, incident.opened_at, "email:alice@example.com").token(
        daemon.keys
    )
    assert f"    https://pager.example.com/ack/{token}\n" in body
    assert f"    https://pager.example.com/resolve/{token}\n" in body
    assert "Alert:     p99 latency over 2s\n" in body
    for n in (sms, email):
        assert set(n) == {
            "time", "id", "key", "service", "incident", "round", "level", "channel", "target",
            "message", "alert", "opened_at", "person", "via",
        }  # fmt: skip
        assert n["alert"] == "p99 latency over 2s" and n["incident"] == "payments-api#1"
    assert (sms["target"], email["target"]) == ("+14155550100", "alice@example.com")
