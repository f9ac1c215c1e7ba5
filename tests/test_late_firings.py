"""Late firings: a firing delivered after its own alert resolved pages nobody (the rule of
"Late firings" in `pager.domain`), by example and by Hypothesis over duplicated and reordered
deliveries of one alert's firing and resolved messages.

An alert's firings are told apart by the sender's `startsAt`: every copy of one firing has the
same, a firing after a resolve a later one. A firing whose `startsAt` is not after the one its
alert resolved with is a late copy; one without `startsAt` proves nothing and pages as before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs
from hypothesis import given
from hypothesis import strategies as st

from pager.alertmanager import instant
from pager.domain import (
    MAX_RESOLVED,
    RESOLVED_FOR,
    Alert,
    Event,
    Healthy,
    Level,
    Policy,
    Resolve,
    ServiceState,
    Source,
    Started,
    Target,
    decide,
    stale,
)

T0 = 1_800_000_000.0
POLICY = Policy((Level((Target.parse("email:alice@example.com"),), 300.0),))
F = Source("prom", "3fa1c2d4e5f60718")
S1 = 1_799_999_000_000_000_000  # startsAt, nanoseconds: the sender's clock, not pagerd's
S2 = S1 + 120_000_000_000


def run(
    events: list[Event], state: ServiceState | None = None, now: float = T0
) -> tuple[ServiceState, int]:
    """The state after `events` at `now`, and how many notifications they sent."""
    state = state or ServiceState("api")
    sent = 0
    for event in events:
        state, notes = decide(state, event, now, POLICY)
        sent += len(notes)
    return state, sent


def test_a_firing_after_its_resolve_with_the_same_starts_at_pages_nobody() -> None:
    state, sent = run([Alert("disk full", F, S1), Resolve(F, S1)])
    assert state.healthy and sent == 1
    assert stale(state, F, S1, T0 + 60)
    late, again = run([Alert("disk full", F, S1)], state, T0 + 60)
    assert late is state and again == 0  # nothing changed: nothing to write


def test_a_firing_that_started_later_is_a_new_firing_and_pages() -> None:
    state, _ = run([Alert("disk full", F, S1), Resolve(F, S1)])
    state, sent = run([Alert("disk full", F, S2)], state)
    assert sent == 1 and state.incident is not None and state.incident.number == 2
    assert state.started[F] == Started(S2)


def test_a_firing_that_started_earlier_is_older_still() -> None:
    state, _ = run([Alert("disk full", F, S2), Resolve(F, S2)])
    assert run([Alert("disk full", F, S1)], state)[0] is state


def test_without_starts_at_nothing_is_proven_and_it_pages_as_before() -> None:
    state, _ = run([Alert("disk full", F), Resolve(F)])
    assert F not in state.started
    state, sent = run([Alert("disk full", F)], state)
    assert sent == 1 and state.last_incident == 2
    # A resolve that gave one, then a firing that gives none: not provably stale either.
    state, _ = run([Resolve(F, S1)], state)
    state, sent = run([Alert("disk full", F)], state)
    assert sent == 1 and state.last_incident == 3


def test_the_resolve_is_remembered_for_an_hour_of_pagerds_clock() -> None:
    state, _ = run([Alert("disk full", F, S1), Resolve(F, S1)])
    assert run([Alert("x", F, S1)], state, T0 + RESOLVED_FOR)[0] is state
    later, sent = run([Alert("x", F, S1)], state, T0 + RESOLVED_FOR + 1)
    assert sent == 1 and later.last_incident == 2  # forgotten: as before, a page too many


def test_the_senders_clock_is_never_compared_with_pagerds() -> None:
    """A sender whose clock is a year ahead or behind: the same answers, since its `startsAt`
    is only compared with its own."""
    year = 365 * 86400 * 10**9
    for skew in (-year, 0, year):
        state, _ = run([Alert("a", F, S1 + skew), Resolve(F, S1 + skew)])
        assert run([Alert("a", F, S1 + skew)], state)[1] == 0
        assert run([Alert("a", F, S2 + skew)], state)[1] == 1


def test_a_resolve_before_its_firing_makes_the_firing_late() -> None:
    """The firing was delayed (a retry, a slower peer) past its own resolve: the alert is over,
    and an incident opened for it would have no resolve left to close it."""
    state, _ = run([Resolve(F, S1)])
    assert state.healthy and state.started[F] == Started(S1, T0)
    assert run([Alert("disk full", F, S1)], state)[1] == 0
    assert run([Alert("disk full", F, S2)], state)[1] == 1


def test_a_repeated_resolve_changes_nothing() -> None:
    state, _ = run([Alert("a", F, S1), Resolve(F, S1)])
    assert run([Resolve(F, S1)], state, T0 + 5)[0] is state
    assert run([Resolve(F)], state, T0 + 5)[0] is state


def test_a_later_starts_at_of_an_alert_still_firing_is_kept_and_pages_nobody() -> None:
    """The alert resolved and fired again at the sender, but its resolve never came here: still
    the open incident's. A late resolve of the first firing closes it, as before, and then the
    second firing's copies are late too: it paged once, with the incident."""
    state, sent = run([Alert("a", F, S1), Alert("a", F, S2)])
    assert sent == 1 and state.started[F] == Started(S2)
    state, _ = run([Resolve(F, S1)], state)
    assert state.healthy and state.started[F] == Started(S2, T0)
    assert run([Alert("a", F, S2)], state)[1] == 0


def test_healthy_forgets_what_fires_so_its_resend_pages_but_keeps_what_resolved() -> None:
    other = Source("prom", "other")
    state, _ = run([Alert("a", other, S1), Resolve(other, S1), Alert("a", F, S1), Healthy()])
    assert F not in state.started and state.started[other] == Started(S1, T0)
    assert run([Alert("a", F, S1)], state)[1] == 1  # still firing at the sender: pages again
    assert run([Alert("a", other, S1)], state)[1] == 0


def test_what_is_remembered_is_bounded_per_service_and_integration() -> None:
    state = ServiceState("api")
    for i in range(MAX_RESOLVED + 5):
        state, _ = run([Resolve(Source("prom", f"f{i}"), S1)], state, T0 + i)
    state, _ = run([Resolve(Source("pd", "k"), S1)], state, T0 + MAX_RESOLVED + 5)
    kept = [s.key for s in state.started if s.integration == "prom"]
    assert len(kept) == MAX_RESOLVED and kept[0] == "f5"  # the oldest five went
    assert Source("pd", "k") in state.started  # another integration's are its own
    assert run([Alert("a", Source("prom", "f0"), S1)], state)[1] == 1  # forgotten: pages
    assert run([Alert("a", Source("prom", "f9"), S1)], state)[1] == 0


def test_past_the_cap_what_resolved_over_an_hour_ago_goes_first() -> None:
    """An hour on, a resolve counts for nothing; it is dropped once the map is past its cap
    (a storm of resolves need not walk it every time)."""
    old = {Source("pd", f"k{i}"): Started(S1, T0) for i in range(MAX_RESOLVED)}
    state = ServiceState("api", started=old)
    later = T0 + RESOLVED_FOR + 1
    assert stale(state, Source("pd", "k1"), S1, T0 + RESOLVED_FOR)
    assert not stale(state, Source("pd", "k1"), S1, later)
    state, _ = run([Resolve(F, S1)], state, later)
    assert set(state.started) == {F}


def test_an_alert_counted_on_an_open_incident_keeps_what_is_remembered() -> None:
    state, _ = run([Resolve(Source("prom", "gone"), S1), Alert("a", F, S1)])
    state, _ = run([Alert("b", Source("prom", "second"), S2)], state)
    assert state.incident is not None and state.incident.alerts == 2
    assert set(state.started) == {Source("prom", "gone"), F, Source("prom", "second")}


# Hypothesis: one alert, delivered duplicated and out of order -------------------------------

deliveries = st.integers(min_value=1, max_value=5).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.tuples(st.integers(0, 2 * n - 1), st.integers(0, 10**6)), max_size=12),
    )
)


def _natural(n: int) -> list[tuple[int, str]]:
    """Firing k (0-based) and its resolve, in the order they happened."""
    return [(k, status) for k in range(n) for status in ("firing", "resolved")]


def _event(k: int, status: str) -> Event:
    starts_at = S1 + k * 60_000_000_000
    if status == "firing":
        return Alert(f"firing {k}", F, starts_at)
    return Resolve(F, starts_at)


def _pages(sequence: list[tuple[int, str]]) -> list[str]:
    """The message of each page, delivering `sequence` a second apart."""
    state = ServiceState("api")
    paged: list[str] = []
    for second, (k, status) in enumerate(sequence):
        state, notes = decide(state, _event(k, status), T0 + second, POLICY)
        paged += [note.message for note in notes]
        firing_started = {s for s, seen in state.started.items() if seen.resolved_at is None}
        assert firing_started <= state.firing, "a firing start kept for what does not fire"
    return paged


@given(deliveries)
def test_with_late_copies_each_real_firing_pages_exactly_once(
    case: tuple[int, list[tuple[int, int]]],
) -> None:
    """The messages as they happened, with copies of any message already sent delivered again
    anywhere later (a retry, a cluster peer): each of the n firings pages once, and no copy
    pages."""
    n, copies = case
    sequence = _natural(n)
    for position, pick in sorted(copies, reverse=True):
        at = min(position + 1, len(sequence))
        sequence.insert(at, sequence[pick % at])
    assert _pages(sequence) == [f"firing {k}" for k in range(n)]


@given(st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.lists(st.sampled_from(_natural(n)), max_size=16)
))  # fmt: skip
def test_in_any_order_no_firing_pages_twice(sequence: list[tuple[int, str]]) -> None:
    paged = _pages(sequence)
    assert len(paged) == len(set(paged))


@given(st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.permutations(_natural(n))
))  # fmt: skip
def test_a_firing_pages_exactly_when_it_started_after_all_that_resolved(
    sequence: list[tuple[int, str]],
) -> None:
    """Each message once, in any order: firing k pages exactly when, at its delivery, the alert
    does not fire and k started after every firing delivered up to the last resolve (a resolve
    ends the firings it knows of, and those seen firing before it)."""
    state = ServiceState("api")
    for second, (k, status) in enumerate(sequence):
        before = state
        state, notes = decide(state, _event(k, status), T0 + second, POLICY)
        if status == "firing":
            done = [i for i, (_, s) in enumerate(sequence[:second]) if s == "resolved"]
            ended = max((j for j, _ in sequence[: done[-1] + 1]), default=-1) if done else -1
            assert bool(notes) == (F not in before.firing and k > ended)


# startsAt as Alertmanager (Go) writes it -----------------------------------------------------


def test_starts_at_is_read_to_the_nanosecond_in_any_offset() -> None:
    assert instant("2026-11-30T21:24:22.814243Z") == 1_796_073_862_814_243_000
    assert instant("2026-11-30T22:24:22.814243+01:00") == 1_796_073_862_814_243_000
    assert instant("2026-11-30T21:24:22.814243001Z") == 1_796_073_862_814_243_001
    assert instant("2026-11-30T21:24:22Z") == 1_796_073_862_000_000_000


def test_a_starts_at_that_is_none_proves_nothing() -> None:
    for text in (
        "",
        "0001-01-01T00:00:00Z",  # Go's zero time: no time given
        "2026-02-30T00:00:00Z",
        "2026-11-30T21:24:60Z",
        "2026-11-30 21:24:22Z",
        "2026-11-30T21:24:22",  # no zone
        "2026-11-30T21:24:22.1234567891Z",  # ten digits
        "2026-11-30T21:24:22+24:00",
        "\uff19\uff19\uff19\uff19-11-30T21:24:22Z",  # digits, but not ASCII ones
        "9999-12-31T23:59:59Z",  # past what 64 bits of nanoseconds hold
    ):
        assert instant(text) is None, text


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(0, 999),
    st.integers(-14 * 60, 14 * 60),
)
def test_starts_at_written_as_go_writes_it_reads_back_exactly(
    at: datetime, nanos: int, offset_minutes: int
) -> None:
    """Go's RFC 3339 with nanoseconds: trailing zeros of the fraction dropped, `Z` for UTC."""
    shown = at.astimezone(timezone(timedelta(minutes=offset_minutes)))
    fraction = f"{shown.microsecond:06d}{nanos:03d}".rstrip("0")
    text = shown.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")
    zone = shown.strftime("%z")
    text += "Z" if offset_minutes == 0 else f"{zone[:3]}:{zone[3:]}"
    expected = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000 + nanos
    assert instant(text) == expected


def test_a_later_state_copy_keeps_started() -> None:
    """`attrs.evolve` and the positional copy in `decide` carry `started`."""
    state = ServiceState("api", started={F: Started(S1, T0)})
    assert attrs.evolve(state, last_incident=2).started == {F: Started(S1, T0)}
