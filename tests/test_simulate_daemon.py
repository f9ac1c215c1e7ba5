"""`simulate` cannot disagree with the daemon: a real daemon, under the mock clock, is given a
random policy, silences, an alert at a random time and maybe an acknowledgement; what its `log`
transport really sends (each notification's id and time) is what the `simulate` op, asked of
the same daemon before any of it happened, said it would send (an acknowledgement that
expires, with the policy's `ack_expiry`, restarting escalation). The second property adds a
schedule (a rotation handing off every hour or two, in a random zone, maybe restricted to some
hours so that it has gaps), people with notification rules (delayed steps), a `schedule:` and a
`person:` target in the policy, an override made over the socket and maintenance windows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.domain import Level, Policy, Target
from pager.timefmt import duration, isoformat, timestamp
from tests import strategies
from tests.harness import T0, connect, notifications, running, settle, write_config


def policy_toml(policy: Policy) -> str:
    text = f"[policies.random]\nrepeat = {policy.repeat}\n"
    if policy.ack_expiry is not None:
        text += f'ack_expiry = "{duration(policy.ack_expiry)}"\n'
    for level in policy.levels:
        targets = ", ".join(f'"{t}"' for t in level.targets)
        text += f"[[policies.random.levels]]\ntargets = [{targets}]\n"
        text += f'ack_timeout = "{duration(level.ack_timeout)}"\n'
    return text


# (from, length) of each silence, in seconds after T0; the alert's time; the ack's delay. An
# ack comes half a second off the whole seconds every deadline falls on, so that no ack and
# deadline are due at the same instant (which of two things due at once goes first is the
# scheduler's business, not this test's).
# Half the policies with an `ack_expiry`: an acknowledgement then expires and escalation
# restarts at level 1 (`schedule:` targets resolved at the expiry), in the daemon as simulated.
expiries = st.none() | st.sampled_from([60.0, 1800.0, 5400.0])
expiring_policies = st.builds(
    lambda policy, expiry: attrs.evolve(policy, ack_expiry=expiry), strategies.policies, expiries
)
silences = st.lists(st.tuples(st.integers(0, 3 * 3600), st.integers(1, 2 * 3600)), max_size=3)
alert_at = st.integers(0, 3 * 3600)
ack_after = st.none() | st.integers(0, 3 * 3600).map(lambda s: s + 0.5)


async def scenario(
    folder: Path,
    policy: Policy,
    quiet: list[tuple[int, int]],
    at: int,
    ack: float | None,
    extra: str = "",
    overrides: tuple[dict[str, Any], ...] = (),
) -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, Any]]:
    config = write_config(folder, policy_toml(policy) + extra, {"api": "random"})
    async with running(config), connect(config.socket) as conn:
        start = trio.current_time()
        for override in overrides:
            reply = await conn.request("override", schedule="primary", **override)
            # One `for` somebody never on call in its window changes nothing and is refused:
            # the simulation is then asked without it, as the daemon pages without it.
            assert reply["ok"] or reply["error"]["code"] == "bad_request", reply
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
        # A person's delayed step may go out after the last step of the timeline.
        latest = max(
            [timestamp(note["at"]) - T0 for step in simulated["timeline"]
             for note in step.get("notify", [])],
            default=0.0,
        )  # fmt: skip
        await trio.sleep_until(start + max(at + parse(last), latest) + 1)
        await settle()
        status = await conn.request("status", service="api")
    sent = sorted((n["time"], n["id"]) for n in notifications(config))
    return simulated, sent, status


def parse(text: str) -> float:
    from pager.timefmt import parse_duration

    return 0.0 if text == "0s" else parse_duration(text)


@settings(max_examples=40, deadline=None)
@given(policy=expiring_policies, quiet=silences, at=alert_at, ack=ack_after)
def test_the_daemon_sends_what_simulate_said_it_would(
    policy: Policy, quiet: list[tuple[int, int]], at: int, ack: float | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:

        async def main() -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, Any]]:
            with trio.fail_after(7 * 24 * 3600):
                return await scenario(Path(folder), policy, quiet, at, ack)

        simulated, sent, status = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    check(simulated, sent, status)


def check(simulated: dict[str, Any], sent: list[tuple[str, str]], status: dict[str, Any]) -> None:
    promised = sorted(
        (note["at"], note["id"])
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
    expired = [step for step in simulated["timeline"] if step["event"] == "expired"]
    if expired:  # the acknowledgement expired: the incident is acknowledged no more
        assert not incident["acknowledged"] and len(expired) == 1


PEOPLE = """
[people.alice]
email = "alice@example.com"
sms = "+14155550100"
notify = ["sms", "email after 2m"]
[people.bob]
email = "bob@example.com"
sms = "+442071838750"
[people.carol]
email = "carol@example.com"
notify = ["email", "email after 1m"]
"""


def schedule_toml(zone: str, shift: str, restrict: tuple[int, int] | None) -> str:
    text = f"""
[schedules.primary]
timezone = "{zone}"
[[schedules.primary.layers]]
people = ["alice", "bob"]
shift = "{shift}"
start = 2027-01-14
handoff = "07:30"
"""
    if restrict is not None:
        text += (
            'restrict = [{ days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],'
            f' from = "{restrict[0]:02d}:00", until = "{restrict[1]:02d}:00" }}]\n'
        )
    return text


def maintenance_toml(windows: list[tuple[int, int]]) -> str:
    """Windows on Friday 15 January (the alert's day), hours of UTC."""
    return "".join(
        f'[[services.api.maintenance]]\ndays = ["fri"]\nfrom = "{begin:02d}:00"\n'
        f'until = "{end:02d}:00"\ntimezone = "UTC"\n'
        for begin, end in windows
    )


@st.composite
def rota_policies(draw: st.DrawFn) -> Policy:
    """A random policy, with `schedule:primary` (and maybe `person:carol`) in one of its levels,
    or alone in a level of its own (which reaches nobody in a gap of the schedule)."""
    policy = draw(strategies.policies)
    levels = list(policy.levels)
    where = draw(st.integers(0, len(levels)))
    named = [Target("schedule", "primary")]
    if draw(st.booleans()):
        named.append(Target("person", "carol"))
    if where == len(levels):
        levels.append(Level(tuple(named), draw(strategies.ack_timeouts)))
    else:
        levels[where] = Level((*levels[where].targets, *named), levels[where].ack_timeout)
    return Policy(tuple(levels), policy.repeat, ack_expiry=draw(expiries))


def override(by: str, begins: int, length: int, for_: str | None) -> dict[str, Any]:
    """An `override` request's fields: `by` on call from `begins` seconds after T0, for
    `length` seconds, instead of `for_` (or of whoever is on call)."""
    fields = {"by": by, "from": isoformat(T0 + begins), "until": isoformat(T0 + begins + length)}
    return fields if for_ is None else {**fields, "for": for_}


overrides = st.lists(
    st.builds(
        override,
        st.sampled_from(["bob", "carol"]),
        st.integers(0, 4 * 3600),
        st.integers(60, 4 * 3600),
        st.none() | st.just("alice"),
    ),
    max_size=2,
).map(tuple)


@settings(max_examples=40, deadline=None)
@given(
    policy=rota_policies(),
    zone=st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe"]),
    shift=st.sampled_from(["1h", "2h"]),
    restrict=st.none() | st.tuples(st.integers(0, 23), st.integers(0, 23)),
    changes=overrides,
    windows=st.lists(st.tuples(st.integers(8, 13), st.integers(1, 2)), max_size=1).map(
        lambda found: [(begin, begin + length) for begin, length in found]
    ),
    quiet=silences,
    at=alert_at,
    # Often within a person's delays of the first level: the ack cancels the delayed steps.
    ack=ack_after | st.integers(0, 150).map(lambda s: s + 0.5),
)
def test_the_daemon_sends_what_simulate_said_it_would_with_schedules_and_overrides(
    policy: Policy,
    zone: str,
    shift: str,
    restrict: tuple[int, int] | None,
    changes: tuple[dict[str, Any], ...],
    windows: list[tuple[int, int]],
    quiet: list[tuple[int, int]],
    at: int,
    ack: float | None,
) -> None:
    extra = PEOPLE + schedule_toml(zone, shift, restrict) + maintenance_toml(windows)
    with tempfile.TemporaryDirectory() as folder:

        async def main() -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, Any]]:
            with trio.fail_after(7 * 24 * 3600):
                return await scenario(Path(folder), policy, quiet, at, ack, extra, changes)

        simulated, sent, status = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    check(simulated, sent, status)
    for step in simulated["timeline"]:
        if step["event"] in ("notify", "unreached") and "schedule" in step:
            # On the schedule's clock: the same instant as `at`, with the zone's offset (to the
            # second: a step after an acknowledgement's expiry falls on half a second).
            assert step["timezone"] == zone
            assert timestamp(step["local_at"]) == round(timestamp(step["at"]))
