"""`simulate` cannot disagree with the daemon: a real daemon, under the mock clock, is given a
random policy, silences, an alert at a random time and maybe an acknowledgement; what its `log`
transport really sends (each notification's id and time) is what the `simulate` op, asked of
the same daemon before any of it happened, said it would send."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.domain import Policy
from pager.timefmt import duration, isoformat
from tests import strategies
from tests.harness import T0, connect, notifications, running, settle, write_config


def policy_toml(policy: Policy) -> str:
    text = f"[policies.random]\nrepeat = {policy.repeat}\n"
    for level in policy.levels:
        targets = ", ".join(f'"{t}"' for t in level.targets)
        text += f"[[policies.random.levels]]\ntargets = [{targets}]\n"
        text += f'ack_timeout = "{duration(level.ack_timeout)}"\n'
    return text


# (from, length) of each silence, in seconds after T0; the alert's time; the ack's delay. An
# ack comes half a second off the whole seconds every deadline falls on, so that no ack and
# deadline are due at the same instant (which of two things due at once goes first is the
# scheduler's business, not this test's).
silences = st.lists(st.tuples(st.integers(0, 3 * 3600), st.integers(1, 2 * 3600)), max_size=3)
alert_at = st.integers(0, 3 * 3600)
ack_after = st.none() | st.integers(0, 3 * 3600).map(lambda s: s + 0.5)


async def scenario(
    folder: Path, policy: Policy, quiet: list[tuple[int, int]], at: int, ack: float | None
) -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, Any]]:
    config = write_config(folder, policy_toml(policy), {"api": "random"})
    async with running(config), connect(config.socket) as conn:
        start = trio.current_time()
        for begins, length in quiet:
            reply = await conn.request(
                "silence", service="api", reason="planned", **{
                    "from": isoformat(T0 + begins), "for": duration(length)
                },
            )  # fmt: skip
            assert reply["ok"], reply
        asked = {"service": "api", "at": isoformat(T0 + at)}
        if ack is not None:
            asked["ack_after"] = duration(ack)
        simulated = await conn.request("simulate", **asked)
        assert simulated["ok"], simulated
        await trio.sleep_until(start + at)
        await conn.request("alert", service="api", message="down")
        if ack is not None:
            await trio.sleep_until(start + at + ack)
            acked = await conn.request("ack", service="api", by="bob")
            assert acked["ok"], acked
        last = simulated["timeline"][-1]["after"]
        await trio.sleep_until(start + at + parse(last) + 1)
        await settle()
        status = await conn.request("status", service="api")
    sent = sorted((n["time"], n["id"]) for n in notifications(config))
    return simulated, sent, status


def parse(text: str) -> float:
    from pager.timefmt import parse_duration

    return 0.0 if text == "0s" else parse_duration(text)


@settings(max_examples=40, deadline=None)
@given(policy=strategies.policies, quiet=silences, at=alert_at, ack=ack_after)
def test_the_daemon_sends_what_simulate_said_it_would(
    policy: Policy, quiet: list[tuple[int, int]], at: int, ack: float | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:

        async def main() -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, Any]]:
            with trio.fail_after(7 * 24 * 3600):
                return await scenario(Path(folder), policy, quiet, at, ack)

        simulated, sent, status = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    promised = sorted(
        (step["at"], note["id"])
        for step in simulated["timeline"]
        if step["event"] == "notify"
        for note in step["notify"]
    )
    assert sent == promised
    incident = status["incident"]
    assert incident is not None
    assert simulated["end"] in ("acknowledged", "exhausted")  # the policies here are short
    assert incident["exhausted"] == (simulated["end"] == "exhausted")
    if simulated["end"] == "acknowledged":
        assert incident["acknowledged"] and incident["next_escalation_at"] is None
