"""An alert is never lost for its text: too long is cut with a marker, bytes that are not UTF-8
are replaced, NUL too; only what cannot name a service is refused. Client and daemon both."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from pager.protocol import MAX_BY, MAX_LINE, MAX_TEXT, ProtocolError, parse_request
from pager.text import TRUNCATED
from pagerd.config import Config
from tests.harness import connect, notifications, running

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
        (b'{"op":"alert","service":"api","message":"disk \xff\xfe full"}', "disk \ufffd\ufffd full"),
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
