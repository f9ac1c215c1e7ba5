"""`pager simulate`: the timeline an incident would follow, decided by the daemon's own `decide`.

Not a model of the rules but a driver of them: it feeds `decide` the events the daemon's
scheduler would feed it (the alert that opens the incident, each step's `Timeout` at its
deadline, which is also when a silence or maintenance window holding a step ends), and an
acknowledgement if one is to come (and its expiry, `AckExpired`, with the policy's
`ack_expiry`), and writes down what each decision notified, held, or found nobody to notify.
`person:` and `schedule:` targets are resolved by the resolver the daemon gives `decide` (its
schedules and overrides, `pagerd.engine.oncall.Rota.resolver`), at the time each level is
notified; a person's delayed steps carry their time (`Notify.not_before`), and those the
acknowledgement comes before are cancelled, as the outbox cancels them, as are those that come
due while the service is silenced (a silence or maintenance window begun after their level was
notified: `pagerd.delivery.outbox.silenced_step`). With the same state, policy, silences,
windows and resolver it cannot disagree with the daemon: it is the same code, given the same
events at the same times (tests/test_simulate_daemon.py holds the two equal on a real daemon).

What it cannot know: silences and overrides made after it is asked, alerts of other sources,
reloads.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from pager.budget import Budget, spend
from pager.domain import (
    Ack,
    AckExpired,
    Alert,
    Notify,
    Policy,
    Resolver,
    ServiceState,
    Timeout,
    Unreached,
    decide,
    decide_with,
)
from pager.silences import HeldBy, Quiet, Silence, holder, silenced_until, spans

MAX_STEPS: Final = 500
"""Decisions a simulation makes at most: a policy of many levels and many rounds (or windows
that hold it for ever) is shown that far."""
MESSAGE: Final = "simulated"

Kind = Literal["notify", "unreached", "held", "acknowledged", "expired", "exhausted"]
End = Literal["acknowledged", "exhausted", "rounds", "limit"]


@attrs.frozen
class Step:
    """One moment of the timeline: `notify` (a step's notifications, `round` and `level`; a
    delayed one's time is its `not_before`, and those an acknowledgement comes before are in
    `cancelled` instead, those due while the service is silenced in `silenced`),
    `unreached` (targets of a level that reached nobody, `reasons`; the
    next level follows at once if none was reached), `held` (a silence or maintenance window
    holds the next step until `until`), `acknowledged`, `expired` (the acknowledgement
    outlived the policy's `ack_expiry`: escalation restarts at level 1 of the next round, its
    `schedule:` targets resolved then), `exhausted`."""

    at: float
    kind: Kind
    round: int = 0
    level: int = 0
    notifications: tuple[Notify, ...] = ()
    until: float | None = None
    reasons: tuple[str, ...] = ()
    cancelled: tuple[Notify, ...] = ()
    silenced: tuple[Notify, ...] = ()
    held_by: HeldBy | None = None
    """What holds a `held` step: a silence, or a maintenance window."""
    partial: bool = False
    """An `unreached` step whose level's other targets were notified (not a level skipped)."""


@attrs.frozen
class Timeline:
    service: str
    opened_at: float
    steps: tuple[Step, ...]
    end: End
    """Why it stops: `acknowledged`, `exhausted` (no level left), `rounds` (the next step
    would start a round past `rounds`), `limit` (`MAX_STEPS` decisions)."""


def simulate(
    state: ServiceState,
    policy: Policy,
    at: float,
    *,
    ack_after: float | None = None,
    rounds: int | None = None,
    heartbeat: float | None = None,
    windows: Quiet | None = None,
    resolve: Resolver | None = None,
    budget: Budget | None = None,
) -> Timeline:
    """The timeline of an incident of `state`'s service opened at `at` by an alert, nobody
    acknowledging (or acknowledging `ack_after` seconds later), as `decide` rules it with
    `policy`, `state`'s silences, `windows` and `resolve`; at most `rounds` rounds if given. An
    acknowledgement due at the very moment of a deadline, or of a delayed step, is taken
    first. With the policy's `ack_expiry`, the acknowledgement expires and the timeline goes on
    from the restart (an incident exhausted before the acknowledgement restarts too). Each
    decision is a step of `budget` (`TooMuch` past it)."""
    state = ServiceState(state.name, state.last_incident, silences=state.silences)
    ack_at = None if ack_after is None else at + ack_after
    now = at
    state, notes, unreached = decide_with(
        state, Alert(MESSAGE), now, policy, heartbeat, resolve=resolve, windows=windows
    )
    steps: list[Step] = []
    for _ in range(MAX_STEPS):
        spend(budget)
        incident = state.incident
        assert incident is not None  # nothing here closes it
        for missed in unreached:
            if rounds is not None and missed.round > rounds:
                break
            steps.append(_unreached(now, missed))
        if notes:
            if rounds is not None and incident.round > rounds:
                return Timeline(state.name, at, tuple(steps), "rounds")
            steps.append(_quieted(Step(now, "notify", incident.round, incident.level, notes),
                                  state.silences, windows))  # fmt: skip
        elif incident.exhausted:
            if ack_at is not None:  # acknowledged later all the same: its delayed steps go
                steps = [_cancelled(step, ack_at) for step in steps]
            steps.append(Step(now, "exhausted", incident.round, incident.level))
            if ack_at is None or policy.ack_expiry is None:
                return Timeline(state.name, at, tuple(steps), "exhausted")
        elif incident.silenced:
            held = Step(now, "held", incident.round, incident.level, until=incident.deadline)
            steps.append(attrs.evolve(held, held_by=holder(state.silences, now)))
        deadline = incident.deadline
        if ack_at is not None and (deadline is None or ack_at <= deadline):
            state, _ = decide(
                state, Ack(), ack_at, policy, heartbeat, resolve=resolve, windows=windows
            )
            steps = [_cancelled(step, ack_at) for step in steps]
            steps.append(Step(ack_at, "acknowledged", incident.round, incident.level))
            acked = state.incident
            assert acked is not None and acked.acknowledged_at is not None
            if acked.deadline is None:  # no `ack_expiry`: it holds until the incident closes
                return Timeline(state.name, at, tuple(steps), "acknowledged")
            # It expires: escalation restarts then, as the daemon's scheduler hands it over.
            ack_at, now = None, acked.deadline
            steps.append(Step(now, "expired", acked.round, acked.level))
            expired = AckExpired(acked.number, acked.acknowledged_at)
            state, notes, unreached = decide_with(
                state, expired, now, policy, heartbeat, resolve=resolve, windows=windows
            )
            continue
        assert deadline is not None  # open, not acknowledged, not exhausted
        now = deadline
        step = Timeout(incident.number, incident.round, incident.level)
        state, notes, unreached = decide_with(
            state, step, now, policy, heartbeat, resolve=resolve, windows=windows
        )
    return Timeline(state.name, at, tuple(steps), "limit")


def _unreached(at: float, missed: Unreached) -> Step:
    return Step(
        at, "unreached", missed.round, missed.level, reasons=missed.reasons,
        partial=not missed.skipped,
    )  # fmt: skip


def _quieted(step: Step, silences: tuple[Silence, ...], windows: Quiet | None) -> Step:
    """`step` with the delayed notifications that come due while the service is silenced
    (`silences`, `windows`) moved to `silenced`: the outbox cancels them then."""
    sources = (spans(silences), windows)
    quiet = tuple(
        n
        for n in step.notifications
        if n.not_before is not None and silenced_until(n.not_before, sources) is not None
    )
    if not quiet:
        return step
    kept = tuple(n for n in step.notifications if n not in quiet)
    return attrs.evolve(step, notifications=kept, silenced=quiet)


def _cancelled(step: Step, ack_at: float) -> Step:
    """`step` with the delayed notifications the acknowledgement at `ack_at` comes before (or
    with) moved to `cancelled`: the outbox sends nothing for an acknowledged incident (and says
    so first, of a step that a silence would have held back too)."""
    if step.kind != "notify":
        return step
    late = tuple(
        n
        for n in (*step.notifications, *step.silenced)
        if n.not_before is not None and n.not_before >= ack_at
    )
    if not late:
        return step
    kept = tuple(n for n in step.notifications if n not in late)
    quiet = tuple(n for n in step.silenced if n not in late)
    return attrs.evolve(step, notifications=kept, cancelled=late, silenced=quiet)
