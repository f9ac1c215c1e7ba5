"""An alert is never lost for its text: too long is cut with a marker, bytes that are not UTF-8
are replaced, NUL too; only what cannot name a service is refused. Client and daemon both."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pager import cli
from pager.protocol import MAX_BY, MAX_LINE, MAX_TEXT, ProtocolError, parse_request
from pager.text import TRUNCATED
from pagerd.config import Config
from tests.fake_pagerd import fake_pagerd
from tests.harness import connect, notifications, running
from tests.processes import PAGER, Pagerd

DAY = 24 * 3600.0


def test_a_message_over_the_limit_is_cut_with_a_marker() -> None:
    line = json.dumps({"op": "alert", "service": "api", "message": "x" * 10_000}).encode()
    request = parse_request(line)
    assert request.message is not None
    assert len(request.message) == MAX_TEXT
    assert request.message == "x" * (MAX_TEXT - len(TRUNCATED)) + TRUNCATED


def test_by_over_the_limit_is_cut_with_a_marker() -> None:
    request = parse_request(json.dumps({"op": "ack", "service": "api", "by": "é" * 999}).encode())
    assert request.by is not None
    assert len(request.by) == MAX_BY and request.by.endswith(TRUNCATED)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            b'{"op":"alert","service":"api","message":"disk \xff\xfe full"}',
            "disk \ufffd\ufffd full",
        ),
        (b'{"op":"alert","service":"api","message":"cut \xe2\x82"}', "cut \ufffd"),
        (b'{"op":"alert","service":"api","message":"lone \\ud800"}', "lone \ufffd"),
        (b'{"op":"alert","service":"api","message":"nul \\u0000 here"}', "nul \ufffd here"),
        (b'{"op":"alert","service":"api","message":"\xff' + b"x" * 5000 + b'"}', None),
    ],
)
def test_text_that_is_not_valid_is_repaired_not_refused(line: bytes, message: str | None) -> None:
    request = parse_request(line)
    assert (request.op, request.service) == ("alert", "api")
    assert request.message is not None
    if message is None:
        assert request.message.startswith("\ufffd") and request.message.endswith(TRUNCATED)
    else:
        assert request.message == message


@pytest.mark.parametrize(
    "line",
    [
        b'{"op":"alert","service":"ap\xff","message":"x"}',
        b'{"op":"alert","service":"api\\u0000"}',
        b'{"op":"alert","message":"no service"}',
        b'{"op":"alert","service":"api","message":"\xff"',  # not JSON: cut short
    ],
)
def test_what_cannot_name_a_service_is_still_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        parse_request(line)
    assert excinfo.value.code == "bad_request"


async def test_the_daemon_opens_an_incident_for_a_long_or_broken_message(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    long = json.dumps({"op": "alert", "service": "api", "message": "é" * 8000}).encode()
    broken = b'{"op":"alert","service":"web","message":"bad \xc3\x28 byte"}'
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.send(long + b"\n" + broken + b"\n")
            first, second = await conn.receive(), await conn.receive()
            alive = await conn.request("ping")
    assert first["ok"] is True and second["ok"] is True, (first, second)
    assert first["incident"]["message"] == "é" * (MAX_TEXT - len(TRUNCATED)) + TRUNCATED
    assert second["incident"]["message"] == "bad \ufffd( byte"
    assert alive["ok"] is True
    assert {n["incident"] for n in notifications(config)} == {"api#1", "web#1"}


def test_the_client_sends_a_100_kb_message_cut_to_fit(tmp_path: Path) -> None:
    message = "m" * 100_000
    with fake_pagerd(tmp_path) as fake:
        code = cli.main(["--socket", str(fake.path), "alert", "api", message])
        by = cli.main(["--socket", str(fake.path), "ack", "api", "--by", "b" * 100_000])
    assert (code, by) == (0, 0)
    alert, ack = fake.requests()
    assert alert["message"] == "m" * (MAX_TEXT - len(TRUNCATED)) + TRUNCATED
    assert ack["by"] == "b" * (MAX_BY - len(TRUNCATED)) + TRUNCATED
    assert all(len(line) < MAX_LINE for line in fake.lines)


def test_the_client_sends_a_message_of_invalid_utf8_repaired(tmp_path: Path) -> None:
    # What Python makes of argv bytes that are not UTF-8: lone surrogates (surrogateescape).
    message = os.fsdecode(b"disk \xff full \xe2\x82")
    with fake_pagerd(tmp_path) as fake:
        assert cli.main(["--socket", str(fake.path), "alert", "api", message]) == 0
        assert cli.main(["--socket", str(fake.path), "ack", "api", "--by", message]) == 0
    alert, ack = fake.requests()
    assert alert["message"] == ack["by"] == "disk \ufffd full \ufffd"


def test_the_real_client_and_daemon_page_for_any_argv_bytes(daemon: Pagerd) -> None:
    daemon.start()
    socket = os.fsencode(daemon.socket)
    run = [os.fsencode(arg) for arg in PAGER]
    args = [b"alert", b"api", b"\x1b[2J \xff\xfe " + b"x" * 100_000]
    sent = subprocess.run([*run, b"--socket", socket, *args], capture_output=True, check=False)
    status = subprocess.run(
        [*run, b"--socket", socket, b"--json", b"status", b"api"], capture_output=True, check=False
    )
    assert sent.returncode == 0, sent.stderr
    assert b"Traceback" not in sent.stderr
    message = json.loads(status.stdout)["incident"]["message"]
    assert message.startswith("\x1b[2J \ufffd\ufffd xxx") and message.endswith(TRUNCATED)
    assert len(message) == MAX_TEXT


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=6000))
def test_any_bytes_in_a_message_make_an_alert_of_valid_bounded_text(raw: bytes) -> None:
    # Quotes, backslashes and control bytes would end the string or make it invalid JSON.
    raw = bytes(b for b in raw if b >= 0x20 and b not in b'"\\')
    request = parse_request(b'{"op":"alert","service":"api","message":"' + raw + b'"}')
    assert (request.op, request.service) == ("alert", "api")
    assert request.message is not None and len(request.message) <= MAX_TEXT
    request.message.encode("utf-8")  # no lone surrogate: storable and sendable
    assert "\x00" not in request.message
