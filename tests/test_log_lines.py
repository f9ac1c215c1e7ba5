"""One event, one log line: nothing a client sends can start a line of pagerd's log, move the
cursor of a terminal that shows it, or hide in the journal."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Final

import pytest
import trio
import trio.testing

from pagerd.access.peers import Peer
from pagerd.config import Config
from pagerd.operations.logs import JournalFormatter, PlainFormatter, configure
from tests.harness import connect, running, settle

DAY = 24 * 3600.0

# What a hostile client puts in every string it can: a forged record after a newline, a CR that
# rewinds a terminal's line, ESC and OSC sequences, a C1 control, Unicode line and paragraph
# separators (which `str.splitlines` splits on), and a right-to-left override.
HOSTILE: Final = (
    "mallory\n2027-01-15 08:00:00,000 CRITICAL pagerd.actors: FORGED\r"
    "\x1b[2J\x1b]0;title\x07\x85\u2028\u2029\u202eFORGED"
)
_RECORD: Final = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure("debug", stream, {})
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


async def test_control_characters_in_every_field_of_every_op_stay_in_one_line(
    autojump_clock: trio.testing.MockClock, config: Config, log_stream: io.StringIO
) -> None:
    requests = [
        {"op": "alert", "service": "api", "message": HOSTILE},
        {"op": "alert", "service": HOSTILE, "message": HOSTILE},
        {"op": "ack", "service": "api", "by": HOSTILE},
        {"op": "ack", "service": HOSTILE, "by": HOSTILE},
        {"op": "healthy", "service": HOSTILE},
        {"op": "healthy", "service": "api"},
        {"op": "status", "service": HOSTILE},
        {"op": "history", "service": HOSTILE},
        {"op": "history", "incident": HOSTILE},
        {"op": "ping", HOSTILE: HOSTILE},
        {"op": "metrics", "x": HOSTILE},
        {"op": HOSTILE},
        {HOSTILE: "alert", "service": "api"},
    ]
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            for request in requests:
                await conn.request(**request) if "op" in request else await conn.send_json(request)
            await settle()
    text = log_stream.getvalue()
    lines = text.split("\n")[:-1]
    assert lines, "nothing was logged"
    assert all(_RECORD.match(line) for line in lines), text
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]", text), text
    events = [re.sub(_RECORD, "", line).split(" service=")[0] for line in lines]
    assert events.count("opened") == 1
    assert events.count("acknowledged") == 1
    assert events.count("closed") == 1
    acked = next(line for line in lines if "acknowledged" in line)
    assert "by='mallory\\n2027-01-15" in acked and "\\u202eFORGED'" in acked


@pytest.mark.parametrize("formatter", [PlainFormatter(), JournalFormatter()])
def test_a_record_s_own_lines_are_indented_and_escaped(formatter: logging.Formatter) -> None:
    record = logging.LogRecord("pagerd.x", logging.INFO, "", 0, "got %s", (HOSTILE,), None)
    lines = formatter.format(record).split("\n")
    first, rest = lines[0], lines[1:]
    assert rest and all(line.lstrip("<6>").startswith("  ") for line in rest)
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)
    assert "\\x1b[2J\\x1b]0;title\\x07\\x85\\u2028\\u2029\\u202eFORGED" in lines[-1]
    assert first.endswith("got mallory")


def test_a_peer_s_user_name_is_escaped() -> None:
    peer = Peer(pid=7, uid=1000, gid=1000, user="eve\n2027 CRITICAL x\x1b[2J")
    assert peer.describe() == "uid=1000 user=eve\\n2027 CRITICAL x\\x1b[2J pid=7"
