"""Timestamps: the fast ISO 8601 formatter says exactly what datetime says, and reads back."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pager.alertmanager import instant
from pager.timefmt import duration, isoformat, nanoformat, timestamp
from pagerd.config.durations import MAX_DURATION, parse_duration

T0 = 1_800_000_000.0


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Near whole seconds and milliseconds is where rounding to the microsecond carries over.
edges = st.sampled_from(
    [0.0, 0.0004995, 0.0005, 0.9994999, 0.9995, 0.9999994, 0.9999995, 0.9999996]
)


@given(
    ts=st.floats(min_value=-1e9, max_value=1e10)
    | st.builds(lambda s, e: s + e, st.integers(-(10**9), 10**10), edges)
    | st.builds(lambda s, e: s - e, st.integers(-(10**9), 10**10), edges)
)
def test_isoformat_is_datetimes_isoformat_to_the_millisecond(ts: float) -> None:
    assert isoformat(ts) == _reference(ts)


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (T0, "2027-01-15T08:00:00.000Z"),
        (T0 + 0.5, "2027-01-15T08:00:00.500Z"),
        (T0 + 59.9999996, "2027-01-15T08:01:00.000Z"),
        (-0.25, "1969-12-31T23:59:59.750Z"),
    ],
)
def test_isoformat_examples_and_back(ts: float, text: str) -> None:
    assert isoformat(ts) == text
    assert timestamp(text) == pytest.approx(ts, abs=0.001)


@given(st.integers(min_value=1, max_value=int(MAX_DURATION * 1000)))
def test_a_duration_is_shown_as_the_config_writes_it(millis: int) -> None:
    """`no heartbeat for 5m`: what `duration` shows, the config reads back as the same time."""
    seconds = millis / 1000
    shown = duration(seconds)
    assert parse_duration(shown) == pytest.approx(seconds, abs=1e-6)


def test_durations_read_as_written() -> None:
    assert [duration(s) for s in (300.0, 5400.0, 0.5, 86400.0, 90061.5)] == [
        "5m", "1h30m", "500ms", "1d", "1d1h1m1s500ms"
    ]  # fmt: skip


@given(st.integers(min_value=-(2**62), max_value=2**63 - 1))
def test_a_senders_time_is_shown_as_go_writes_it_and_reads_back_exactly(ns: int) -> None:
    shown = nanoformat(ns)
    assert instant(shown) == ns
    fraction = re.search(r"\.(\d+)Z$", shown)
    assert fraction is None or not fraction.group(1).endswith("0")


def test_a_senders_time_keeps_its_digits_and_no_more() -> None:
    for text in ("2026-11-30T21:24:22.809107Z", "2026-11-30T21:41:07.5Z", "2026-11-30T21:41:07Z"):
        found = instant(text)
        assert found is not None and nanoformat(found) == text
