"""Hypothesis strategies shared by the tests: one place that says what valid input looks like."""

from __future__ import annotations

from hypothesis import strategies as st

from pager.domain import Level, Policy, Target

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
