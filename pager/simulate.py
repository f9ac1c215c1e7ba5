"""`pager simulate`: the timeline an incident would follow, decided by the daemon's own `decide`.

Not a model of the rules but a driver of them: it feeds `decide` the events the daemon's
scheduler would feed it (the alert that opens the incident, each step's `Timeout` at its
deadline, which is also when a silence holding a step ends), and an acknowledgement if one is
to come, and writes down what each decision notified or held. With the same state, policy and
silences it cannot disagree with the daemon: it is the same code, given the same events at the
same times (tests/test_simulate_daemon.py holds the two equal on a real daemon).

What it cannot know: silences started after it is asked, alerts of other sources, reloads.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from pager.domain import Ack, Alert, Notify, Policy, ServiceState, Timeout, decide
from pager.silences import Quiet

MAX_STEPS: Final = 500
"""Decisions a simulation makes at most: a policy of many levels and many rounds (or windows
that hold it for ever) is shown that far."""
MESSAGE: Final = "simulated"

Kind = Literal["notify", "held", "acknowledged", "exhausted"]
End = Literal["acknowledged", "exhausted", "rounds", "limit"]


@attrs.frozen
class Step:
    """One moment of the timeline: `notify` (a step's notifications, `round` and `level`),
    `held` (a silence holds the next step until `until`), `acknowledged`, `exhausted`."""

    at: float
    kind: Kind
    round: int = 0
    level: int = 0
    notifications: tuple[Notify, ...] = ()
    until: float | None = None


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
) -> Timeline:
    """The timeline of an incident of `state`'s service opened at `at` by an alert, nobody
    acknowledging (or acknowledging `ack_after` seconds later), as `decide` rules it with
    `policy`, `state`'s silences and `windows`; at most `rounds` rounds if given. An
    acknowledgement due at the very moment of a deadline is taken first."""
    state = ServiceState(state.name, state.last_incident, silences=state.silences)
    ack_at = None if ack_after is None else at + ack_after
    now = at
    state, notes = decide(state, Alert(MESSAGE), now, policy, heartbeat, windows=windows)
    steps: list[Step] = []
    for _ in range(MAX_STEPS):
        incident = state.incident
        assert incident is not None  # nothing here closes it
        if notes:
            if rounds is not None and incident.round > rounds:
                return Timeline(state.name, at, tuple(steps), "rounds")
            steps.append(Step(now, "notify", incident.round, incident.level, notes))
        elif incident.exhausted:
            steps.append(Step(now, "exhausted", incident.round, incident.level))
            return Timeline(state.name, at, tuple(steps), "exhausted")
        elif incident.silenced:
            steps.append(Step(now, "held", incident.round, incident.level, until=incident.deadline))
        deadline = incident.deadline
        assert deadline is not None  # open, not acknowledged, not exhausted
        if ack_at is not None and ack_at <= deadline:
            state, _ = decide(state, Ack(), ack_at, policy, heartbeat, windows=windows)
            steps.append(Step(ack_at, "acknowledged", incident.round, incident.level))
            return Timeline(state.name, at, tuple(steps), "acknowledged")
        now = deadline
        step = Timeout(incident.number, incident.round, incident.level)
        state, notes = decide(state, step, now, policy, heartbeat, windows=windows)
    return Timeline(state.name, at, tuple(steps), "limit")
