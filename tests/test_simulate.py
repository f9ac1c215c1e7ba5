"""`pager.simulate` on its own, over random policies and silences: a silence delays steps and
never drops one; no step is notified while silenced; without one, the timeline is the policy's
levels at the sums of their timeouts (a plain model, computed apart from `decide`)."""

from __future__ import annotations

import datetime as dt
import itertools

import attrs
from hypothesis import given
from hypothesis import strategies as st

from pager.domain import Level, Policy, ServiceState, Target
from pager.people import Directory, Person, Step
from pager.schedules import Layer, Override, Rotation, Schedule
from pager.silences import Silence, recurring, silenced_until, spans
from pager.simulate import MAX_STEPS, simulate
from pager.weekly import Weekly, Window
from tests import strategies

T0 = 1_800_000_000.0

quiet = st.lists(
    st.tuples(st.integers(0, 7200), st.integers(1, 7200)).map(
        lambda t: Silence(0, T0 + t[0], T0 + t[0] + t[1], "planned", None, T0)
    ),
    max_size=4,
).map(lambda found: tuple(Silence(i + 1, s.starts_at, s.ends_at, s.reason, None, T0)
                          for i, s in enumerate(found)))  # fmt: skip


def plan(policy: Policy) -> list[tuple[float, int, int]]:
    """(time, round, level) of every step, nobody acknowledging and nothing silenced."""
    steps, at = [], T0
    for round_ in range(1, policy.repeat + 2):
        for number, level in enumerate(policy.levels, start=1):
            steps.append((at, round_, number))
            at += level.ack_timeout
    return steps


@given(policy=strategies.policies)
def test_without_silences_the_timeline_is_the_policy_s_steps_at_their_timeouts(
    policy: Policy,
) -> None:
    timeline = simulate(ServiceState("api"), policy, T0)
    notified = [(s.at, s.round, s.level) for s in timeline.steps if s.kind == "notify"]
    assert notified == plan(policy)
    assert timeline.end == "exhausted"
    last = plan(policy)[-1]
    assert timeline.steps[-1].at == last[0] + policy.levels[-1].ack_timeout
    for step in timeline.steps:
        if step.kind == "notify":
            targets = [str(n.target) for n in step.notifications]
            assert targets == list(dict.fromkeys(map(str, policy.levels[step.level - 1].targets)))


@given(policy=strategies.policies, silences=quiet)
def test_a_silence_delays_steps_and_never_drops_or_sends_one_while_in_force(
    policy: Policy, silences: tuple[Silence, ...]
) -> None:
    timeline = simulate(ServiceState("api", silences=silences), policy, T0)
    notified = [s for s in timeline.steps if s.kind == "notify"]
    assert [(s.round, s.level) for s in notified] == [(r, lv) for _, r, lv in plan(policy)]
    for step in notified:
        assert silenced_until(step.at, [spans(silences)]) is None
    for before, after in itertools.pairwise(notified):
        # At least its ack timeout after the step before: later if a silence held it.
        assert after.at >= before.at + policy.levels[before.level - 1].ack_timeout
    for step in timeline.steps:
        if step.kind == "held":
            assert step.until == silenced_until(step.at, [spans(silences)])
            assert step.held_by == "silence"  # no window here: a durable silence holds it


@given(policy=strategies.policies, silences=quiet, ack=st.integers(0, 20000))
def test_an_acknowledgement_ends_the_timeline_and_nothing_is_notified_after_it(
    policy: Policy, silences: tuple[Silence, ...], ack: int
) -> None:
    whole = simulate(ServiceState("api", silences=silences), policy, T0)
    acked = simulate(ServiceState("api", silences=silences), policy, T0, ack_after=ack)
    # An ack due at a deadline goes first: what came before is what was due earlier (and the
    # opening, whenever the ack comes).
    before = [s for s in whole.steps if (s.at < T0 + ack or s.at == T0) and s.kind != "exhausted"]
    if acked.end == "acknowledged":
        assert acked.steps[:-1] == tuple(before)
        assert acked.steps[-1].kind == "acknowledged" and acked.steps[-1].at == T0 + ack
    else:
        assert acked.steps == whole.steps  # exhausted before anybody acknowledged


@given(policy=strategies.policies, rounds=st.integers(1, 3))
def test_rounds_cut_the_timeline_after_that_many_rounds(policy: Policy, rounds: int) -> None:
    timeline = simulate(ServiceState("api"), policy, T0, rounds=rounds)
    assert max(s.round for s in timeline.steps) <= rounds
    assert timeline.end == ("rounds" if policy.repeat + 1 > rounds else "exhausted")


def test_a_timeline_is_bounded() -> None:
    long = Policy((Level(tuple(strategies.TARGETS), 60.0),), repeat=MAX_STEPS)
    timeline = simulate(ServiceState("api"), long, T0)
    assert timeline.end == "limit" and len(timeline.steps) <= MAX_STEPS


# People and schedules: the resolver the daemon gives `decide` ---------------------------------

MONDAY = dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC).timestamp()  # 08:00; alice from 09:00
ALICE = Person(
    "alice",
    (Target("email", "alice@example.com"), Target("sms", "+14155550100")),
    (Step("sms"), Step("email", 120.0)),
)
BOB = Person("bob", (Target("email", "bob@example.com"),))
PRIMARY = Schedule(
    "primary",
    dt.UTC,
    (Layer(Rotation(("alice", "bob"), dt.datetime(2024, 1, 1, 9), 1, "days")),),
)
ROTA = Directory({"alice": ALICE, "bob": BOB}, {"primary": PRIMARY})
LEAD = Target("email", "lead@example.com")
ROTA_POLICY = Policy((Level((Target("schedule", "primary"),), 1800.0), Level((LEAD,), 900.0)))


def test_a_schedule_resolves_when_its_level_is_notified_with_each_method_s_delay() -> None:
    timeline = simulate(ServiceState("api"), ROTA_POLICY, MONDAY + 3600, resolve=ROTA.resolve)
    first = timeline.steps[0]
    assert first.kind == "notify" and first.at == MONDAY + 3600
    shown = [(str(n.target), n.via, n.not_before) for n in first.notifications]
    assert shown == [
        ("sms:+14155550100", "schedule:primary → alice", None),
        ("email:alice@example.com", "schedule:primary → alice", MONDAY + 3600 + 120),
    ]
    assert [str(n.target) for n in timeline.steps[1].notifications] == ["email:lead@example.com"]


def test_an_override_is_applied_as_the_daemon_applies_it() -> None:
    override = Override(1, "primary", "bob", "alice", MONDAY + 3000, MONDAY + 7200)
    rota = ROTA.with_overrides({"primary": (override,)})
    timeline = simulate(ServiceState("api"), ROTA_POLICY, MONDAY + 3600, resolve=rota.resolve)
    (note,) = timeline.steps[0].notifications
    assert (str(note.target), note.via) == ("email:bob@example.com", "schedule:primary → bob")


def test_a_level_with_nobody_on_call_is_shown_and_the_next_follows_at_once() -> None:
    timeline = simulate(ServiceState("api"), ROTA_POLICY, MONDAY, resolve=ROTA.resolve)  # 08:00
    unreached, notify = timeline.steps[:2]
    assert (unreached.kind, unreached.at, unreached.level) == ("unreached", MONDAY, 1)
    assert unreached.reasons == ("schedule:primary has nobody on call",)
    assert (notify.kind, notify.at, notify.level) == ("notify", MONDAY, 2)


def test_an_acknowledgement_before_a_delayed_step_cancels_it() -> None:
    timeline = simulate(
        ServiceState("api"), ROTA_POLICY, MONDAY + 3600, ack_after=60.5, resolve=ROTA.resolve
    )
    first = timeline.steps[0]
    assert [str(n.target) for n in first.notifications] == ["sms:+14155550100"]
    assert [str(n.target) for n in first.cancelled] == ["email:alice@example.com"]
    assert timeline.end == "acknowledged"


def test_a_maintenance_window_holds_the_timeline_as_a_silence_does() -> None:
    # Mondays 08:00 to 09:30 UTC: an incident at 08:01 is held until 09:30, and level 1 is
    # resolved then (alice, on call from 09:00), not when the alert came (nobody on call).
    window = recurring([Weekly((Window.of(["mon"], "08:00", "09:30"),), dt.UTC)])
    timeline = simulate(
        ServiceState("api"), ROTA_POLICY, MONDAY + 60, windows=window, resolve=ROTA.resolve
    )
    held = timeline.steps[0]
    assert (held.kind, held.until, held.held_by) == ("held", MONDAY + 5400, "maintenance window")
    notify = timeline.steps[1]
    assert (notify.kind, notify.at, notify.level) == ("notify", MONDAY + 5400, 1)
    assert notify.notifications[0].via == "schedule:primary → alice"


def test_an_expired_acknowledgement_restarts_the_timeline_with_who_is_on_call_then() -> None:
    """With `ack_expiry`, the timeline goes on past the acknowledgement: at its expiry, level 1
    of the next round, its schedule resolved then (bob, a day later), as the daemon does."""
    policy = attrs.evolve(ROTA_POLICY, ack_expiry=86400.0)
    timeline = simulate(
        ServiceState("api"), policy, MONDAY + 3600, ack_after=60.5, resolve=ROTA.resolve
    )
    kinds = [(s.kind, s.round, s.level) for s in timeline.steps]
    assert kinds == [
        ("notify", 1, 1),
        ("acknowledged", 1, 1),
        ("expired", 1, 1),
        ("notify", 2, 1),
        ("notify", 2, 2),
        ("exhausted", 2, 2),
    ]
    expired, again = timeline.steps[2:4]
    assert expired.at == again.at == MONDAY + 3600 + 60.5 + 86400
    assert [n.via for n in again.notifications] == ["schedule:primary → bob"]
    assert timeline.end == "exhausted"


@given(policy=strategies.policies, expiry=st.sampled_from([1.0, 600.0, 7200.0]))
def test_an_acknowledgement_after_exhaustion_expires_and_restarts_too(
    policy: Policy, expiry: float
) -> None:
    """An incident exhausted before it is acknowledged: the acknowledgement's expiry restarts
    its escalation all the same (`round_base`: as many rounds again as `repeat` allows)."""
    policy = attrs.evolve(policy, ack_expiry=expiry)
    whole = simulate(ServiceState("api"), policy, T0)
    ack = whole.steps[-1].at - T0 + 0.5
    timeline = simulate(ServiceState("api"), policy, T0, ack_after=ack)
    notified = [(s.round, s.level) for s in timeline.steps if s.kind == "notify"]
    steps = [(r, lv) for _, r, lv in plan(policy)]
    assert notified == steps + [(r + policy.repeat + 1, lv) for r, lv in steps]
    assert [s.kind for s in timeline.steps].count("expired") == 1
    assert timeline.end == "exhausted"
