"""Timestamps: the fast ISO 8601 formatter says exactly what datetime says, and reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pager.timefmt import isoformat, timestamp

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
