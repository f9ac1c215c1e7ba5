"""Concurrent clients through the real daemon code and socket, in random interleavings.

Hypothesis picks what each client sends to which service and when, and whether it waits for each
reply or pipelines (sends every event that follows without a pause in one write, then reads the
replies); the clients run at once under MockClock, so many events for one service arrive in the
same instant, through actors and claims alike. Whatever the interleaving, the pager's promises
must hold, checked from the clients' replies and the notification log.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pager.timefmt import timestamp
from pagerd.config import Config
from tests.harness import T0, connect, json_line, notifications, running, settle, write_config

SERVICES = ["api", "web", "db"]
LEVEL1 = {"email:alice@example.com", "sms:+14155550100"}
TIMEOUTS = {1: 300.0, 2: 900.0}  # the harness policy: level 1 then 2, repeat 0

ops = st.tuples(
    st.sampled_from(["alert", "alert", "ack", "healthy"]),
    st.sampled_from(SERVICES),
    st.sampled_from([0.0, 0.0, 0.0, 1.0, 200.0, 400.0, 1000.0]),  # wait before sending
)
Script = tuple[bool, list[tuple[str, str, float]]]  # (pipelines?, what it sends)
clients = st.lists(
    st.tuples(st.booleans(), st.lists(ops, min_size=1, max_size=8)), min_size=2, max_size=6
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts=clients, keep_history=st.sampled_from([None, None, 1.0, 500.0]))
def test_any_interleaving_pages_each_step_once_and_on_time(
    scripts: list[Script], keep_history: float | None
) -> None:
    # With `keep_history` short, pruning passes (a minute after start, then hourly) run among
    # the events: deleting a service's latest incident would reuse its number, and pages of two
    # incidents with one id would show as a step notified twice.
    with tempfile.TemporaryDirectory(prefix="pagerd-") as folder:
        config = write_config(Path(folder), services={s: "oncall" for s in SERVICES})
        config = attrs.evolve(config, keep_history=keep_history)
        replies, final = trio.run(
            partial(_drive, config, scripts), clock=trio.testing.MockClock(autojump_threshold=0)
        )
        _check(replies, final, notifications(config))


Sent = tuple[float, str, dict[str, Any]]  # (time sent, op, reply)


async def _drive(
    config: Config, scripts: list[Script]
) -> tuple[list[Sent], dict[str, dict[str, Any]]]:
    replies: list[Sent] = []

    async def client(script: Script) -> None:
        pipelines, steps = script
        async with connect(config.socket) as conn:
            i = 0
            while i < len(steps):
                await trio.sleep(steps[i][2])
                burst = [steps[i]]
                i += 1
                while pipelines and i < len(steps) and steps[i][2] == 0.0:
                    burst.append(steps[i])
                    i += 1
                sent_at = trio.current_time()
                await conn.send(
                    b"".join(json_line({"op": op, "service": service}) for op, service, _ in burst)
                )
                for op, _, _ in burst:
                    replies.append((sent_at, op, await conn.receive()))

    with trio.fail_after(24 * 3600):
        async with running(config) as daemon:
            async with trio.open_nursery() as nursery:
                for script in scripts:
                    nursery.start_soon(client, script)
            await trio.sleep(3600)  # let every pending escalation play out
            await settle()
            async with connect(config.socket) as conn:
                status = await conn.request("status")
            # What a restart would load is what the daemon holds: every state committed, and
            # pruning never took a service's open or latest incident.
            loaded = daemon.store.load_states()
            assert loaded == {s: daemon.services.state(s) for s in loaded}
            assert {s for s in SERVICES if daemon.services.state(s).last_incident} == set(loaded)
    return replies, {s["service"]: s for s in status["services"]}


def _check(
    replies: list[Sent], final: dict[str, dict[str, Any]], log: list[dict[str, Any]]
) -> None:
    # Every event got an answer, and only the refusals the rules allow.
    for _, op, reply in replies:
        assert reply["ok"] or (op == "ack" and reply["error"]["code"] == "no_open_incident")

    steps = [(n["incident"], n["round"], n["level"], f"{n['channel']}:{n['target']}") for n in log]
    assert len(steps) == len(set(steps)), "a step was notified twice"

    by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in log:
        by_incident[n["incident"]].append(n)
    opened = {r["incident"]["id"] for _, op, r in replies if op == "alert" and r["ok"]}
    assert set(by_incident) <= opened, "pages without an incident"

    acked_at: dict[str, float] = {}
    for sent_at, op, reply in sorted(replies, key=lambda r: r[0]):
        if op == "ack" and reply["ok"]:
            acked_at.setdefault(reply["incident"]["id"], T0 + sent_at)
    still_open = {s["incident"]["id"] for s in final.values() if s["incident"] is not None}
    for iid in opened:
        notes = by_incident.get(iid, [])
        level1 = {f"{n['channel']}:{n['target']}" for n in notes if n["level"] == 1}
        # A page not yet sent when its incident is acknowledged or closed is not sent at all
        # (cancelled); otherwise level 1 is paged, each target once.
        if level1 != LEVEL1:
            assert iid in acked_at or iid not in still_open, f"{iid}: level 1 not paged"
    for iid, notes in by_incident.items():
        level1 = {f"{n['channel']}:{n['target']}" for n in notes if n["level"] == 1}
        assert level1 <= LEVEL1, f"{iid}: level 1 paged someone else"
        assert all(timestamp(n["time"]) <= acked_at.get(iid, math.inf) for n in notes)
        times = sorted({timestamp(n["time"]) for n in notes})
        assert len(times) <= 2
        if len(times) == 2:
            # Escalated: exactly one ack timeout after opening, and not after an ack.
            assert times[1] - times[0] == TIMEOUTS[1]
            assert acked_at.get(iid, math.inf) >= times[1]

    # Alerts are all counted on the incident they landed in.
    counted = Counter(r["incident"]["id"] for _, op, r in replies if op == "alert")
    for status in final.values():
        incident = status["incident"]
        if incident is not None:
            assert incident["alerts"] == counted[incident["id"]]
            # Still open and never acknowledged after an hour: level 2 was paged.
            if not incident["acknowledged"]:
                assert incident["exhausted"] and incident["level"] == 2
