"""Requests at the edge of the protocol: null for a field, history of what does not exist."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from pager.protocol import ProtocolError, parse_request
from pagerd.config import Config
from tests.harness import connect, running

DAY = 24 * 3600.0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"op": "alert", "service": "api", "message": None}, "message"),
        ({"op": "alert", "service": None}, "service"),
        ({"op": "ack", "service": "api", "by": None}, "by"),
        ({"op": "healthy", "service": None}, "service"),
        ({"op": "status", "service": None}, "service"),
        ({"op": "history", "service": None}, "service"),
        ({"op": "history", "incident": None}, "incident"),
        ({"op": "history", "service": "api", "incident": None}, "incident"),
    ],
)
def test_null_is_refused_naming_the_field(request_: dict[str, object], field: str) -> None:
    """null is not "absent": a client sending it for `service` of a status meant one service."""
    with pytest.raises(ProtocolError) as excinfo:
        parse_request(json.dumps(request_).encode())
    assert excinfo.value.code == "bad_request"
    assert f'"{field}"' in excinfo.value.message and "null" in excinfo.value.message


async def test_status_with_a_null_service_does_not_list_every_service(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            reply = await conn.request("status", service=None)
            alert = await conn.request("alert", service="api", message=None)
            status = await conn.request("status", service="api")
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert "services" not in reply
    assert alert["error"]["code"] == "bad_request"
    assert status["state"] == "healthy"


async def test_history_of_a_service_that_is_not_configured_is_unknown_service(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            by_name = await conn.request("history", service="nope")
            by_id = await conn.request("history", incident="nope#1")
            quiet = await conn.request("history", service="api")
            await conn.request("alert", service="api")
            no_such = await conn.request("history", incident="api#9")
    assert by_name["error"]["code"] == "unknown_service"
    assert by_id["error"]["code"] == "unknown_service"
    assert "'nope'" in by_name["error"]["message"]
    assert quiet["error"]["code"] == "not_found"  # configured, never unhealthy
    assert no_such["error"]["code"] == "not_found"
