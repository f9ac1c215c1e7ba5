"""The daemon over its real Unix socket, under Trio's MockClock: hours pass in milliseconds."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import pytest
import trio
import trio.testing

from pagerd import app
from pagerd.app import StartupError
from pagerd.config import Config
from pagerd.engine import actors
from pagerd.storage.port import StoreUnavailable
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock
from tests.harness import (
    T0,
    Connection,
    connect,
    json_line,
    notifications,
    running,
    settle,
    steps,
    write_config,
)

LEVEL1 = ["email:alice@example.com", "sms:+14155550100"]
LEVEL2 = ["email:lead@example.com"]
DAY = 24 * 3600
T = TypeVar("T")


async def test_alert_opens_incident_and_notifies_each_level_1_target_once(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            reply = await conn.request("alert", service="api", message="p99 > 2s")
            await settle()
    assert reply["ok"] is True
    assert reply["state"] == "unhealthy"
    incident = reply["incident"]
    assert incident["id"] == "api#1"
    assert incident["level"] == 1
    assert incident["alerts"] == 1
    assert incident["acknowledged"] is False
    assert incident["opened_at"] == "2027-01-15T08:00:00.000Z"
    assert incident["next_escalation_at"] == "2027-01-15T08:05:00.000Z"
    written = notifications(config)
    assert sorted(f"{n['channel']}:{n['target']}" for n in written) == LEVEL1
    (first,) = [n for n in written if n["channel"] == "email"]
    assert first["service"] == "api"
    assert first["incident"] == "api#1"
    assert first["level"] == 1
    assert first["time"] == "2027-01-15T08:00:00.000Z"
    assert "p99 > 2s" in first["message"] and "pager ack api" in first["message"]


async def test_unacknowledged_incident_escalates_on_time_for_hours(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    policies = """
[policies.oncall]
repeat = 2
[[policies.oncall.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "30m"
[[policies.oncall.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "1h"
"""
    config = write_config(tmp_path, policies, {"api": "oncall"})
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await trio.sleep(10 * 3600)
            status = await conn.request("status", service="api")
    assert [(n["round"], n["level"], n["time"][11:19]) for n in notifications(config)] == [
        (1, 1, "08:00:00"),
        (1, 2, "08:30:00"),
        (2, 1, "09:30:00"),
        (2, 2, "10:00:00"),
        (3, 1, "11:00:00"),
        (3, 2, "11:30:00"),
    ]
    assert status["incident"]["exhausted"] is True
    assert status["incident"]["next_escalation_at"] is None
    assert status["state"] == "unhealthy"


async def test_ack_stops_escalation(autojump_clock: trio.testing.MockClock, config: Config) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await trio.sleep(60)
            reply = await conn.request("ack", service="api", by="bob")
            await trio.sleep(3 * 3600)
            again = await conn.request("ack", service="api", by="carol")
    assert reply["incident"]["acknowledged"] is True
    assert reply["incident"]["acknowledged_by"] == "bob"
    assert reply["incident"]["next_escalation_at"] is None
    assert again["ok"] is True and again["incident"]["acknowledged_by"] == "bob"
    assert sorted(s[3] for s in steps(config)) == LEVEL1


async def test_healthy_closes_incident_and_nothing_more_is_sent(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            reply = await conn.request("healthy", service="api")
            await trio.sleep(3 * 3600)
            again = await conn.request("healthy", service="api")
            reopened = await conn.request("alert", service="api")
            await settle()
    assert reply == {"ok": True, "service": "api", "state": "healthy", "incident": None}
    assert again["ok"] is True
    assert reopened["incident"]["id"] == "api#2"
    assert sorted(s[0] for s in steps(config)) == ["api#1", "api#1", "api#2", "api#2"]


async def test_alerts_while_unhealthy_are_counted_and_page_nobody(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            for _ in range(5):
                reply = await conn.request("alert", service="api")
            await settle()
    assert reply["incident"]["alerts"] == 5
    assert sorted(s[3] for s in steps(config)) == LEVEL1


async def test_refusals_change_nothing(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            unknown = await conn.request("alert", service="nope")
            no_incident = await conn.request("ack", service="api")
            status = await conn.request("status", service="api")
            unknown_status = await conn.request("status", service="nope")
    assert unknown["error"]["code"] == "unknown_service"
    assert no_incident["error"]["code"] == "no_open_incident"
    assert status["state"] == "healthy"
    assert unknown_status["error"]["code"] == "unknown_service"
    assert notifications(config) == []


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "bad_request"),
        (b"", "bad_request"),
        (b"[1, 2]", "bad_request"),
        (b'{"op": 3}', "bad_request"),
        (b'{"service": "api"}', "bad_request"),
        (b'{"op": "explode"}', "unknown_op"),
        (b'{"op": "alert"}', "bad_request"),
        (b'{"op": "alert", "service": 7}', "bad_request"),
        (b'{"op": "alert", "service": "api", "message": ["x"]}', "bad_request"),
        (b'{"op": "alert", "service": "api", "mesage": "typo"}', "bad_request"),
        (b'{"op": "alert", "service": "a b"}', "bad_request"),
        (b'{"op": "ack", "service": "api", "by": 1}', "bad_request"),
        (b'{"op": "alert", "service": "api\\u0000"}', "bad_request"),
        (b"\xff\xfe", "bad_request"),
        (b"[" * 100_000, "too_large"),
        (b"[" * 60_000, "bad_request"),
        (b'{"op": "alert", "service": "api", "message": 1e999999}', "bad_request"),
    ],
)
async def test_bad_requests_get_their_code_and_change_nothing(
    autojump_clock: trio.testing.MockClock, config: Config, line: bytes, code: str
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.send(line + b"\n")
            reply = await conn.receive()
            if code != "too_large":
                status = await conn.request("status", service="api")
                assert status["state"] == "healthy"
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
    assert notifications(config) == []


async def test_too_large_line_is_answered_then_the_connection_closed(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            async with connect(config.socket) as conn:
                await conn.send(b"x" * (64 * 1024 + 1))  # no newline yet: still too large
                reply = await conn.receive()
                assert await conn.receive_line() is None
            async with connect(config.socket) as other:
                assert (await other.request("ping"))["ok"] is True
    assert reply["error"]["code"] == "too_large"


async def test_pipelined_requests_are_answered_in_order(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    ops = [
        {"op": "alert", "service": "api"},
        {"op": "ack", "service": "web"},
        {"op": "ping"},
        {"op": "alert", "service": "web"},
        {"op": "nope"},
        {"op": "ack", "service": "api"},
        {"op": "status"},
    ]
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.send(b"".join(json_line(op) for op in ops))
            replies = [await conn.receive() for _ in ops]
    assert [r["ok"] for r in replies] == [True, False, True, True, False, True, True]
    assert replies[1]["error"]["code"] == "no_open_incident"
    assert replies[2]["pong"] is True
    assert replies[4]["error"]["code"] == "unknown_op"
    assert replies[5]["incident"]["acknowledged"] is True
    assert [s["service"] for s in replies[6]["services"]] == ["api", "web"]


async def test_client_vanishing_mid_request_changes_nothing(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            async with connect(config.socket) as conn:
                await conn.send(b'{"op": "alert", "serv')
            async with connect(config.socket) as conn:
                await conn.send(b'{"op": "alert", "service": "web"}\n{"op": "ping"}\n')
            await settle()
            async with connect(config.socket) as conn:
                api = await conn.request("status", service="api")
                web = await conn.request("status", service="web")
    assert api["state"] == "healthy"
    # A complete request is served even if its client left before the reply.
    assert web["state"] == "unhealthy"


async def test_alert_storm_on_one_service_pages_each_target_once(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    replies: list[dict[str, object]] = []

    async def client() -> None:
        async with connect(config.socket) as conn:
            for _ in range(5):
                replies.append(await conn.request("alert", service="api", message="down"))

    with trio.fail_after(DAY):
        async with running(config):
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(client)
            await settle()
            async with connect(config.socket) as conn:
                status = await conn.request("status", service="api")
    assert len(replies) == 200 and all(r["ok"] for r in replies)
    assert status["incident"]["alerts"] == 200
    assert sorted(s[3] for s in steps(config)) == LEVEL1


async def test_a_client_that_never_reads_does_not_stall_others(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    line = b'{"op": "alert", "service": "api"}\n'
    with trio.fail_after(DAY):
        async with (
            running(config),
            connect(config.socket) as greedy,
            trio.open_nursery() as nursery,
        ):

            async def flood() -> None:
                for _ in range(5000):
                    await greedy.send(line)

            nursery.start_soon(flood)
            await settle()  # the flood is now blocked: pagerd stopped reading it
            async with connect(config.socket) as other:
                reply = await other.request("alert", service="web")
            nursery.cancel_scope.cancel()
    assert reply["ok"] is True


async def test_restart_keeps_incidents_and_fires_deadlines_missed_while_down(
    autojump_clock: trio.testing.MockClock,
    config: Config,
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await conn.request("alert", service="web")
            await conn.request("ack", service="web")
            await settle()
        # Down for an hour: api's level-2 deadline (08:05) passed meanwhile.
        async with running(config, Clock(T0 + 3600)), connect(config.socket) as conn:
            await settle()
            api = await conn.request("status", service="api")
            web = await conn.request("status", service="web")
            await trio.sleep(3 * 3600)
    assert sorted((s[0], s[2]) for s in steps(config)) == [
        ("api#1", 1),
        ("api#1", 1),
        ("api#1", 2),  # at once on start (09:00), and level 1 not again
        ("web#1", 1),
        ("web#1", 1),
    ]
    assert notifications(config)[-1]["time"] == "2027-01-15T09:00:00.000Z"
    assert api["incident"]["level"] == 2
    assert api["incident"]["alerts"] == 1
    assert api["incident"]["next_escalation_at"] == "2027-01-15T09:15:00.000Z"
    assert web["incident"]["acknowledged"] is True


async def test_undelivered_notifications_are_delivered_after_restart(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    config.log_path.mkdir(parents=True)  # a folder where the log belongs: every delivery fails
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            reply = await conn.request("alert", service="api")
            await trio.sleep(10)  # retried, still failing
        config.log_path.rmdir()
        async with running(config, Clock(T0 + 60)):
            await settle()
    assert reply["ok"] is True  # decided and committed: delivery is the outbox's job
    assert sorted(s[3] for s in steps(config)) == LEVEL1


async def test_delivery_failure_is_retried_until_it_succeeds(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    config.log_path.mkdir(parents=True)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await trio.sleep(5)
            config.log_path.rmdir()
            await trio.sleep(120)
    assert sorted(s[3] for s in steps(config)) == LEVEL1


async def test_status_lists_every_configured_service(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="web", message="5xx")
            reply = await conn.request("status")
    assert reply["ok"] is True
    assert [(s["service"], s["state"]) for s in reply["services"]] == [
        ("api", "healthy"),
        ("web", "unhealthy"),
    ]


async def test_second_daemon_on_the_same_socket_or_state_refuses_to_start(
    autojump_clock: trio.testing.MockClock, config: Config, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other")
    clash = attrs.evolve(other, socket=config.socket)
    same_state = attrs.evolve(config, socket=tmp_path / "other.sock")
    with trio.fail_after(DAY):
        async with running(config):
            with pytest.RaisesGroup(
                pytest.RaisesExc(StartupError, match="already listening"), flatten_subgroups=True
            ):
                async with running(clash):
                    pass
            with pytest.RaisesGroup(
                pytest.RaisesExc(StartupError, match="another pagerd is using"),
                flatten_subgroups=True,
            ):
                async with running(same_state):
                    pass
            async with connect(config.socket) as conn:
                assert (await conn.request("ping"))["ok"] is True


async def test_stale_socket_file_is_replaced(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(config.socket))
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            assert (await conn.request("ping"))["ok"] is True
    assert not config.socket.exists()  # removed on a clean stop


async def test_socket_is_not_open_to_everyone(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            mode = config.socket.stat().st_mode & 0o777
    assert mode == 0o660


async def test_connection_closed_cleanly_after_eof(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            conn = await Connection.open(config.socket)
            await conn.send(b'{"op": "ping"}\n')
            await conn.stream.send_eof()
            assert (await conn.receive())["ok"] is True
            assert await conn.receive_line() is None
            await conn.aclose()


async def test_full_database_answers_unavailable_and_recovers(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            # Fault injection: cap the database at its current size, as a full disk would.
            assert isinstance(daemon.store, Store)
            db = daemon.store._conn
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}")
            replies = [
                await conn.request("alert", service="api", message="x" * 4000) for _ in range(3)
            ]
            status = await conn.request("status", service="api")
            db.execute("PRAGMA max_page_count = 1073741823")  # space is back
            after = await conn.request("alert", service="api")
            await settle()
    refused = [r for r in replies if not r["ok"]]
    assert refused, "the capped database accepted every write"
    assert all(r["error"]["code"] == "unavailable" for r in refused)
    accepted = sum(1 for r in replies if r["ok"])
    if accepted == 0:
        assert status["state"] == "healthy"
    else:
        assert status["incident"]["alerts"] == accepted  # exactly what was told "ok"
    assert after["ok"] is True
    assert sorted(s[3] for s in steps(config)) == LEVEL1


async def test_events_of_many_services_share_commits(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    names = [f"svc-{i}" for i in range(50)]
    config = write_config(tmp_path, services={n: "oncall" for n in names})
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            before = daemon.committer.statistics()

            async def alert(name: str) -> None:
                async with connect(config.socket) as conn:
                    assert (await conn.request("alert", service=name))["ok"] is True

            async with trio.open_nursery() as nursery:
                for name in names:
                    nursery.start_soon(alert, name)
            stats = daemon.committer.statistics()
    transitions = stats.writes - before.writes
    assert transitions >= 50
    assert stats.commits - before.commits < 50  # group commit: fewer transactions than events


@pytest.mark.parametrize("max_claim", [actors.MAX_CLAIM, 4])
async def test_pipelined_storms_from_several_connections_are_each_handled_once(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    max_claim: int,
) -> None:
    # Events for idle services are claimed in bulk (several claims at once when they fill up),
    # while other connections route into the same services' inboxes: every event is decided
    # once, in its connection's order, and every actor ends when its service is idle.
    monkeypatch.setattr(actors, "MAX_CLAIM", max_claim)
    names = [f"svc-{i}" for i in range(30)]
    config = write_config(tmp_path, services={n: "oncall" for n in names})
    rounds = 12  # 360 lines a connection: more than its reply queue holds (256)

    async def storm(k: int) -> list[dict[str, object]]:
        lines = []
        for r in range(rounds):
            for name in names[k:] + names[:k]:  # each connection starts somewhere else
                lines.append({"op": "alert", "service": name, "message": f"{k}/{r}"})
        async with connect(config.socket) as conn:
            await conn.send(b"".join(json_line(line) for line in lines))
            return [await conn.receive() for _ in lines]

    replies: dict[int, list[dict[str, object]]] = {}

    async def run(k: int) -> None:
        replies[k] = await storm(k)

    with trio.fail_after(DAY):
        async with running(config) as daemon:
            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(run, k)
            await settle()
            live = daemon.services.live_actors()
            async with connect(config.socket) as conn:
                status = await conn.request("status")
    assert live == 0
    for k, answers in replies.items():
        assert all(r["ok"] for r in answers), k
        seen: dict[str, int] = {}
        for reply in answers:
            incident = reply["incident"]
            assert isinstance(incident, dict)
            # Within one connection, a service's counts only go up: its order was kept.
            assert incident["alerts"] > seen.get(incident["id"], 0)
            seen[incident["id"]] = incident["alerts"]
    assert {s["service"]: s["incident"]["alerts"] for s in status["services"]} == {
        n: 3 * rounds for n in names
    }
    opened = {s[0] for s in steps(config)}
    assert len(opened) == len(names)
    assert len(steps(config)) == len(names) * len(LEVEL1)


async def test_stopping_while_a_reader_waits_on_a_full_inbox_is_prompt(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    # Commits take 0.1 s, so that a pipelined burst for one service fills its actor's inbox and
    # the connection's reader waits to route the rest when the daemon is told to stop. Every
    # reply the connection owes must still come, and it must close without waiting for the
    # shutdown grace to run out.
    async def slow(fn: Callable[[], T]) -> T:
        await trio.sleep(0.1)
        return fn()

    burst = b"".join(b'{"op": "alert", "service": "api"}\n' for _ in range(400))
    received: list[dict[str, object]] = []

    async def read_all(conn: Connection) -> None:
        while (line := await conn.receive_line()) is not None:
            received.append(json.loads(line))

    with trio.fail_after(DAY):
        async with trio.open_nursery() as nursery:
            async with running(config, offload=slow) as daemon:
                conn = await Connection.open(config.socket)
                await conn.send(b'{"op": "alert", "service": "api"}\n')
                # Reading the peer's name takes 0.1 s too: the first alert's commit runs from
                # 0.1 s to 0.2 s, and the burst comes in while it does.
                await trio.sleep(0.12)
                await conn.send(burst)
                await trio.sleep(0.03)  # the reader waits on the full inbox
                assert daemon.services.live_actors() == 1
                nursery.start_soon(read_all, conn)
                stopping = trio.current_time()
            stopped = trio.current_time() - stopping
            await conn.aclose()
    assert stopped < app.SHUTDOWN_GRACE
    assert received and all(r["ok"] for r in received)
    counts = [r["incident"]["alerts"] for r in received]  # type: ignore[index]
    assert counts == list(range(1, len(counts) + 1))  # in order, none skipped


async def test_past_the_connection_limit_new_clients_get_busy(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    config = attrs.evolve(config, limits=attrs.evolve(config.limits, max_connections=3))
    with trio.fail_after(DAY):
        async with running(config):
            first = [await Connection.open(config.socket) for _ in range(3)]
            for conn in first:
                assert (await conn.request("ping"))["ok"] is True
            extra = await Connection.open(config.socket)
            refused = await extra.receive()
            assert await extra.receive_line() is None  # and closed
            assert (await first[0].request("alert", service="api"))["ok"] is True
            await first[1].aclose()
            await settle()
            again = await Connection.open(config.socket)
            assert (await again.request("ping"))["ok"] is True
            for conn in (first[0], first[2], extra, again):
                await conn.aclose()
    assert refused["error"]["code"] == "busy"


async def test_idle_and_half_line_clients_are_closed_without_harm(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    config = attrs.evolve(config, limits=attrs.evolve(config.limits, idle_timeout=300.0))
    with trio.fail_after(DAY):
        async with running(config):
            silent = await Connection.open(config.socket)
            half = await Connection.open(config.socket)
            await half.send(b'{"op": "alert", "service": "a')
            await trio.sleep(config.limits.idle_timeout + 1)
            assert await silent.receive_line() is None
            assert await half.receive_line() is None
            async with connect(config.socket) as other:
                status = await other.request("status", service="api")
            await silent.aclose()
            await half.aclose()
    assert status["state"] == "healthy"


async def test_the_idle_timeout_counts_from_the_last_bytes_and_follows_a_reload(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    limits = attrs.evolve(config.limits, idle_timeout=300.0, write_timeout=3600.0)
    config = attrs.evolve(config, limits=limits)
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            conn = await Connection.open(config.socket)
            for _ in range(3):  # 897 s in all, never 300 s without a request
                await trio.sleep(299)
                assert (await conn.request("ping"))["ok"] is True
            await trio.sleep(200)
            shorter = attrs.evolve(config.limits, idle_timeout=250.0)
            daemon.apply(attrs.evolve(config, limits=shorter))  # while the connection waits
            reloaded = trio.current_time()
            closed = await conn.receive_line()
            waited = trio.current_time() - reloaded
            await conn.aclose()
    assert closed is None
    assert waited == pytest.approx(50.0, abs=0.1)  # 250 s after its last request


class _RefuseAll:
    """Access that lets nobody in: the tests run as root, whom the real one always lets in."""

    groups = None
    restricted = True
    own_uid = -1

    def allows(self, peer: object) -> bool:
        return False


async def test_a_refused_client_that_sends_nothing_is_closed_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = attrs.evolve(config, limits=attrs.evolve(config.limits, idle_timeout=300.0))
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            monkeypatch.setattr(daemon.server, "access", _RefuseAll())
            silent = await Connection.open(config.socket)
            opened = trio.current_time()
            closed = await silent.receive_line()
            waited = trio.current_time() - opened
            await silent.aclose()
            await settle()
            connections = daemon.server.connections
    assert closed is None
    assert waited == pytest.approx(300.0, abs=0.1)
    assert connections == 0


async def test_a_client_that_never_reads_is_closed_after_the_write_timeout(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    line = b'{"op": "status"}\n'
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            greedy = await Connection.open(config.socket)
            sent = 0
            with pytest.raises(trio.BrokenResourceError):  # pagerd closed it
                while True:  # send until pagerd stops reading, never read a reply
                    await greedy.send(line * 100)
                    sent += 100
            await settle()
            assert daemon.server.connections == 0
            async with connect(config.socket) as other:
                assert (await other.request("ping"))["ok"] is True
            await greedy.aclose()
    assert sent > 0


async def test_a_client_that_reads_late_but_within_the_write_timeout_gets_every_reply(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    count = 20_000  # far more replies than the socket's buffers hold: pagerd's writes block
    with trio.fail_after(DAY):
        async with (
            running(config),
            connect(config.socket) as slow,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(slow.send, b'{"op": "ping"}\n' * count)
            await trio.sleep(config.limits.write_timeout - 1)
            replies = [await slow.receive() for _ in range(count)]
    assert all(reply["ok"] for reply in replies)


async def test_a_failing_read_fails_that_request_not_the_daemon(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> list[object]:
        raise StoreUnavailable("disk I/O error")

    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            monkeypatch.setattr(daemon.store, "deliveries", broken)  # fault injection
            failed = await conn.request("status", service="api")
            alive = await conn.request("ping")
    assert failed["error"]["code"] == "unavailable"
    assert "disk I/O error" in failed["error"]["message"]
    assert alive["ok"] is True
