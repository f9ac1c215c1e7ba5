"""The `log` transport's file, which the README tells people to `cat`: whatever an alert said,
each line is the exact JSON of the notification and holds no character that is not printable."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from pager.domain import Notify, Target
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
