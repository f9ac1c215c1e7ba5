"""The `log` transport's file, which the README tells people to `cat`: whatever an alert said,
each line is the exact JSON of the notification and holds no character that is not printable."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from pager.domain import Notify, Target
from pager.messages import payload
from pagerd.delivery.transports.log import LogTransport
from pagerd.storage.offload import inline
from pagerd.timing.clock import Clock
from tests.harness import T0

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
    n = Notify("api", 1, 1, 1, Target("email", "alice@example.com"), message, T0)
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
