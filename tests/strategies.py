"""Hypothesis strategies shared by the tests: one place that says what valid input looks like."""

from __future__ import annotations

from hypothesis import strategies as st

from pager.domain import Incident, Level, Monitor, Policy, ServiceState, Target
from pager.silences import Silence

TARGETS = [
    Target("email", "alice@example.com"),
    Target("email", "bob@example.com"),
    Target("sms", "+14155550100"),
    Target("sms", "+442071838750"),
]

targets = st.sampled_from(TARGETS)
ack_timeouts = st.sampled_from([1.0, 30.0, 60.0, 900.0])
levels = st.builds(
    Level,
    targets=st.lists(targets, min_size=1, max_size=4).map(tuple),  # duplicates allowed on purpose
    ack_timeout=ack_timeouts,
)
policies = st.builds(
    Policy,
    levels=st.lists(levels, min_size=1, max_size=3).map(tuple),
    repeat=st.integers(min_value=0, max_value=2),
)
service_names = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)
messages = st.text(max_size=40)

# Every field away from its default somewhere, so that a copy that forgets one is seen.
times = st.floats(min_value=1e9, max_value=3e9)
incidents = st.builds(
    Incident,
    number=st.integers(min_value=1, max_value=10**6),
    opened_at=times,
    message=messages,
    alerts=st.integers(min_value=1, max_value=10**6),
    round=st.integers(min_value=1, max_value=5),
    level=st.integers(min_value=1, max_value=5),
    deadline=st.none() | times,
    acknowledged_at=st.none() | times,
    acknowledged_by=st.none() | st.text(max_size=10),
    exhausted=st.booleans(),
    heartbeat_only=st.booleans(),
    held_by_alert=st.booleans(),
    acknowledged_via=st.none() | st.sampled_from(["socket", "link", "sms", "slack", "ops"]),
    round_base=st.integers(min_value=0, max_value=4),
    silenced=st.booleans(),
)
heartbeat_intervals = st.sampled_from([30.0, 300.0, 3600.0, 0.5, 86400.0 + 61.5])
monitors = st.builds(
    Monitor, interval=heartbeat_intervals, due_at=st.none() | times, last_at=st.none() | times
)
silences = st.builds(
    lambda number, start, length, ended: Silence(
        number, start, start + length, "db migration", "bob", start, ended
    ),
    number=st.integers(min_value=1, max_value=10**6),
    start=times,
    length=st.floats(min_value=1.0, max_value=86400.0),
    ended=st.none() | times,
)
unhealthy_states = st.builds(
    lambda name, incident, monitor, silenced: ServiceState(
        name, incident.number, incident, heartbeat=monitor, silences=tuple(silenced)
    ),
    service_names,
    incidents,
    st.none() | monitors,
    st.lists(silences, max_size=3, unique_by=lambda s: s.id),
)
