"""Silences over the REST API (a `rest` integration's key), on real TCP: the socket's ops, with
its codes as HTTP statuses, and the integration as who asked."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from tests.harness import notifications, settle
from tests.http import auth, front, http_config

SILENCE = {"service": "api", "reason": "db migration", "for": "2h"}


async def test_a_silence_is_started_listed_and_ended_over_rest(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = http_config(tmp_path)
    with trio.fail_after(3600):
        async with front(config) as (_, client):
            started = await client.post("/silences", json=SILENCE, headers=auth())
            await client.post("/alert", json={"service": "api"}, headers=auth())
            await settle()
            quiet = notifications(config)
            listed = (await client.get("/silences", headers=auth())).json()
            number = started.json()["silence"]["id"]
            ended = await client.delete(f"/silences/{number}", headers=auth())
            await settle()
            again = await client.delete(f"/silences/{number}", headers=auth())
            status = (await client.get("/status/api", headers=auth())).json()
    assert started.status_code == 200
    assert started.json()["silence"]["by"] == "ops"  # the integration, as it did not say
    assert quiet == []
    assert [s["id"] for s in listed["silences"]] == [number]
    assert ended.status_code == 200 and ended.json()["silence"]["ended_by"] == "ops"
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert status["incident"]["level"] == 1  # paged when it ended
    assert len(notifications(config)) == 2


async def test_rest_refuses_what_the_socket_refuses_and_what_the_key_may_not_touch(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(3600):
        async with front(http_config(tmp_path)) as (_, client):
            unknown = await client.post("/silences", json={**SILENCE, "service": "nope"},
                                        headers=auth())  # fmt: skip
            no_reason = await client.post("/silences", json={"service": "api", "for": "1h"},
                                          headers=auth())  # fmt: skip
            past = await client.post(
                "/silences",
                json={"service": "api", "reason": "r", "until": "2001-01-01T00:00:00Z"},
                headers=auth(),
            )
            not_theirs = await client.post("/silences", json=SILENCE, headers=auth("deploys"))
            theirs = await client.post("/silences", json={**SILENCE, "service": "web"},
                                       headers=auth("deploys"))  # fmt: skip
            number = theirs.json()["silence"]["id"]
            other_key = await client.delete(f"/silences/{number}", headers=auth("deploys"))
            web_only = await client.post("/silences", json=SILENCE, headers=auth())
            end_api = await client.delete(
                f"/silences/{web_only.json()['silence']['id']}", headers=auth("deploys")
            )
            no_key = await client.get("/silences")
            bad_id = await client.delete("/silences/one", headers=auth())
            listed = (await client.get("/silences", headers=auth())).json()
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_service")
    assert (no_reason.status_code, no_reason.json()["error"]["code"]) == (400, "bad_request")
    assert past.status_code == 400 and "its end is past" in past.json()["error"]["message"]
    assert not_theirs.status_code == 403
    assert theirs.status_code == 200 and theirs.json()["silence"]["by"] == "deploys"
    assert other_key.status_code == 200  # its own service's silence
    assert end_api.status_code == 403  # deploys may send to web only
    assert no_key.status_code == 401
    assert bad_id.status_code == 400
    assert [(s["service"], s["by"]) for s in listed["silences"]] == [("api", "ops")]
