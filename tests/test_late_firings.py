"""Late firings: a copy of an earlier firing, delivered after a later one of its alert
resolved, pages nobody (the rule of "Late firings" in `pager.domain`), by example and by
Hypothesis over duplicated and reordered deliveries of one alert's firing and resolved messages.

An alert's firings are told apart by the sender's `startsAt`: every copy of one firing has the
same, a firing after a resolve the same (Alertmanager resolved it when its sender went away,
and the sender came back with it still firing) or a later one (it fired anew), never an earlier
one. So only a firing whose `startsAt` is *before* the one its alert last resolved with is
proven stale; one with the same `startsAt` pages (a late copy from a cluster peer looks the
same as the alert back: one page too many, never one too few). A resolve whose `startsAt` is
before that of the firing pagerd holds is an earlier firing's, and changes nothing. Without
`startsAt` nothing is proven, and everything is as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate

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
    Notify,
    Policy,
    Resolve,
    ServiceState,
    Source,
    Started,
    Target,
    Timeout,
    decide,
    stale,
)

T0 = 1_800_000_000.0
POLICY = Policy((Level((Target.parse("email:alice@example.com"),), 300.0),))
F = Source("prom", "3fa1c2d4e5f60718")
S1 = 1_799_999_000_000_000_000  # startsAt, nanoseconds: the sender's clock, not pagerd's
S2 = S1 + 120_000_000_000
S3 = S2 + 120_000_000_000
STATUSES = ("firing", "resolved")


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


def test_a_copy_of_an_earlier_firing_after_a_later_resolve_pages_nobody() -> None:
    """Firing 1 resolved, firing 2 resolved; then a copy of firing 1 (a cluster peer that
    missed both, a retry of an old request): it ended before firing 2 started."""
    state, sent = run([Alert("disk full", F, S1), Resolve(F, S1), Alert("disk full", F, S2)])
    state, more = run([Resolve(F, S2)], state)
    assert state.healthy and sent + more == 2 and state.last_incident == 2
    assert stale(state, F, S1, T0 + 60)
    late, again = run([Alert("disk full", F, S1)], state, T0 + 60)
    assert late is state and again == 0  # nothing changed: nothing to write


def test_the_same_starts_at_after_its_resolve_pages_again() -> None:
    """Prometheus could not reach Alertmanager for longer than the alert's `endsAt`:
    Alertmanager resolved it itself, and pagerd closed the incident. Prometheus comes back, the
    alert still firing, and Alertmanager notifies it with its old `startsAt`. The service is
    down: it pages (a new incident). A late copy from a cluster peer looks the same, and pages
    too: one page too many, never one too few."""
    state, sent = run([Alert("disk full", F, S1), Resolve(F, S1)])
    assert state.healthy and sent == 1
    assert not stale(state, F, S1, T0 + 300)
    state, again = run([Alert("disk full", F, S1)], state, T0 + 300)
    assert again == 1 and state.incident is not None and state.incident.number == 2
    assert state.firing == {F} and state.started[F] == Started(S1)
    # Its resolve, when it comes, closes it, as any resolve of the firing that holds it.
    state, _ = run([Resolve(F, S1)], state, T0 + 400)
    assert state.healthy and state.started[F] == Started(S1, T0 + 400)


def test_a_firing_that_started_later_is_a_new_firing_and_pages() -> None:
    state, _ = run([Alert("disk full", F, S1), Resolve(F, S1)])
    state, sent = run([Alert("disk full", F, S2)], state)
    assert sent == 1 and state.incident is not None and state.incident.number == 2
    assert state.started[F] == Started(S2)


def test_without_starts_at_nothing_is_proven_and_it_pages_as_before() -> None:
    state, _ = run([Alert("disk full", F), Resolve(F)])
    assert F not in state.started
    state, sent = run([Alert("disk full", F)], state)
    assert sent == 1 and state.last_incident == 2
    # A resolve that gave one, then a firing that gives none: not provably stale either.
    state, _ = run([Resolve(F, S2)], state)
    state, sent = run([Alert("disk full", F)], state)
    assert sent == 1 and state.last_incident == 3


def test_the_resolve_is_remembered_for_an_hour_of_pagerds_clock() -> None:
    state, _ = run([Alert("disk full", F, S2), Resolve(F, S2)])
    assert run([Alert("x", F, S1)], state, T0 + RESOLVED_FOR)[0] is state
    later, sent = run([Alert("x", F, S1)], state, T0 + RESOLVED_FOR + 1)
    assert sent == 1 and later.last_incident == 2  # forgotten: as before, a page too many


def test_the_senders_clock_is_never_compared_with_pagerds() -> None:
    """A sender whose clock is a year ahead or behind: the same answers, since its `startsAt`
    is only compared with its own."""
    year = 365 * 86400 * 10**9
    for skew in (-year, 0, year):
        state, _ = run([Alert("a", F, S2 + skew), Resolve(F, S2 + skew)])
        assert run([Alert("a", F, S1 + skew)], state)[1] == 0
        assert run([Alert("a", F, S2 + skew)], state)[1] == 1
        assert run([Alert("a", F, S3 + skew)], state)[1] == 1


def test_a_resolve_before_its_firing_proves_only_earlier_firings_over() -> None:
    """A resolve delivered while its alert does not fire (its firing delayed longer, by a retry
    or a slower peer) is remembered: a firing that started before it is over. The firing it
    resolved, when it comes, pages: it cannot be told from the alert back again."""
    state, _ = run([Resolve(F, S2)])
    assert state.healthy and state.started[F] == Started(S2, T0)
    assert run([Alert("disk full", F, S1)], state)[1] == 0
    assert run([Alert("disk full", F, S2)], state)[1] == 1
    assert run([Alert("disk full", F, S3)], state)[1] == 1


def test_a_repeated_resolve_changes_nothing() -> None:
    state, _ = run([Alert("a", F, S1), Resolve(F, S1)])
    assert run([Resolve(F, S1)], state, T0 + 5)[0] is state
    assert run([Resolve(F)], state, T0 + 5)[0] is state


def test_a_resolve_of_an_earlier_firing_leaves_the_firing_incident_open() -> None:
    """The alert resolved and fired again at the sender, and pagerd has the second firing (a
    copy with a later `startsAt`) before the first one's resolve. That resolve is over a
    firing that ended: the service is down again, so the incident stays open and escalates
    until the second firing resolves."""
    two_levels = Policy(
        (
            Level((Target.parse("email:alice@example.com"),), 300.0),
            Level((Target.parse("email:bob@example.com"),), 300.0),
        )
    )
    state, sent = run([Alert("a", F, S1), Alert("a", F, S2)])
    assert sent == 1 and state.started[F] == Started(S2)
    late, _ = run([Resolve(F, S1)], state)
    assert late is state  # nothing changed: nothing to write
    incident = state.incident
    assert incident is not None and incident.deadline is not None
    escalated, notes = decide(
        state, Timeout(incident.number, incident.round, incident.level), incident.deadline,
        two_levels,
    )  # fmt: skip
    assert [n.target for n in notes] == [Target.parse("email:bob@example.com")]
    # The second firing's resolve closes it; copies of either firing after it: only the
    # second's (the same startsAt) may page again.
    state, _ = run([Resolve(F, S2)], escalated)
    assert state.healthy and state.started[F] == Started(S2, T0)
    assert run([Alert("a", F, S1)], state)[1] == 0
    assert run([Alert("a", F, S2)], state)[1] == 1


def test_a_resolve_of_the_same_firing_a_later_one_or_without_starts_at_closes() -> None:
    for resolve, kept in (
        (Resolve(F, S2), S2),
        (Resolve(F, S3), S3),
        (Resolve(F), S2),  # nothing proven: the firing's is kept
    ):
        state, _ = run([Alert("a", F, S2), resolve])
        assert state.healthy and state.started[F] == Started(kept, T0), resolve
    # A firing without startsAt: any resolve of it closes.
    state, _ = run([Alert("a", F), Resolve(F, S1)])
    assert state.healthy and state.started[F] == Started(S1, T0)


def test_healthy_forgets_what_fires_so_its_resend_pages_but_keeps_what_resolved() -> None:
    other = Source("prom", "other")
    state, _ = run([Alert("a", other, S2), Resolve(other, S2), Alert("a", F, S1), Healthy()])
    assert F not in state.started and state.started[other] == Started(S2, T0)
    assert run([Alert("a", F, S1)], state)[1] == 1  # still firing at the sender: pages again
    assert run([Alert("a", other, S1)], state)[1] == 0
    assert run([Alert("a", other, S2)], state)[1] == 1


def test_what_is_remembered_is_bounded_per_service_and_integration() -> None:
    state = ServiceState("api")
    for i in range(MAX_RESOLVED + 5):
        state, _ = run([Resolve(Source("prom", f"f{i}"), S2)], state, T0 + i)
    state, _ = run([Resolve(Source("pd", "k"), S2)], state, T0 + MAX_RESOLVED + 5)
    kept = [s.key for s in state.started if s.integration == "prom"]
    assert len(kept) == MAX_RESOLVED and kept[0] == "f5"  # the oldest five went
    assert Source("pd", "k") in state.started  # another integration's are its own
    assert run([Alert("a", Source("prom", "f0"), S1)], state)[1] == 1  # forgotten: pages
    assert run([Alert("a", Source("prom", "f9"), S1)], state)[1] == 0


def test_past_the_cap_what_resolved_over_an_hour_ago_goes_first() -> None:
    """An hour on, a resolve counts for nothing; it is dropped once the map is past its cap
    (a storm of resolves need not walk it every time)."""
    old = {Source("pd", f"k{i}"): Started(S2, T0) for i in range(MAX_RESOLVED)}
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
#
# One alert fires and resolves at the sender a few times ("periods"). Each period starts at
# the same `startsAt` as the one before (Alertmanager timed the alert out while its sender was
# away, and the sender came back with it still firing) or at a later one (it fired anew).
# pagerd is told of each, in order, and of copies of what it was told already, anywhere later.

STEP = 60_000_000_000


def _event(e: int, status: str) -> Event:
    """The message of a period that started at step `e`: its firing or its resolve."""
    if status == "firing":
        return Alert(f"started {e}", F, S1 + e * STEP)
    return Resolve(F, S1 + e * STEP)


periods = st.lists(st.booleans(), max_size=4).map(
    lambda anew: list(accumulate([0] + [int(a) for a in anew]))
)
"""Each period's `startsAt` step: the same as the one before, or the next."""

deliveries = periods.flatmap(
    lambda starts: st.tuples(
        st.just(starts),
        st.lists(
            st.tuples(st.integers(0, 2 * len(starts) - 1), st.integers(0, 10**6)), max_size=12
        ),
    )
)


@attrs.frozen
class Message:
    period: int
    e: int
    status: str
    original: bool


def _told(starts: list[int], copies: list[tuple[int, int]]) -> list[Message]:
    """Each period's firing then its resolve, in the order they happened, with copies of any
    message already told delivered again anywhere later (a retry, a cluster peer)."""
    sequence = [
        Message(p, e, status, True)
        for p, e in enumerate(starts)
        for status in ("firing", "resolved")
    ]
    for position, pick in sorted(copies, reverse=True):
        at = min(position + 1, len(sequence))
        sequence.insert(at, attrs.evolve(sequence[pick % at], original=False))
    return sequence


def _deliver(
    sequence: list[tuple[int, str]],
) -> Iterator[tuple[ServiceState, ServiceState, tuple[Notify, ...]]]:
    """(before, after, notifications) of each message of `sequence` (startsAt step, status),
    delivered a second apart."""
    state = ServiceState("api")
    for second, (e, status) in enumerate(sequence):
        before = state
        state, notes = decide(state, _event(e, status), T0 + second, POLICY)
        firing_started = {s for s, seen in state.started.items() if seen.resolved_at is None}
        assert firing_started <= state.firing, "a firing start kept for what does not fire"
        yield before, state, notes


@given(deliveries)
def test_no_real_firing_is_left_unpaged(case: tuple[list[int], list[tuple[int, int]]]) -> None:
    """Whatever late copies come in between: when a period starts, an incident is open (it
    paged, or one open already had); and while it lasts, nothing closes that incident but a
    resolve with the period's own `startsAt` (a late copy of an earlier period's resolve, when
    the alert came back with its old `startsAt`: the window `pager.domain` states), after which
    its next copy pages again."""
    starts, copies = case
    sequence = _told(starts, copies)
    steps = _deliver([(m.e, m.status) for m in sequence])
    current: int | None = None  # the period firing at the sender, if one is
    reopens = False  # a copy of the current period's firing must page again
    for message, (before, after, notes) in zip(sequence, steps, strict=True):
        if message.original:
            current = message.period if message.status == "firing" else None
            reopens = False
        if message.original and message.status == "firing":
            assert after.incident is not None, "a real firing left without an open incident"
        elif current is not None and before.incident is not None and after.incident is None:
            assert message.status == "resolved" and message.e == starts[current], message
            reopens = True
        elif reopens and message.status == "firing" and message.e == starts[current or 0]:
            assert notes and after.incident is not None, "the copy after the window paged nobody"
            reopens = False


@given(st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(STATUSES)), max_size=16)
))  # fmt: skip
def test_once_a_later_start_is_told_an_earlier_one_changes_nothing(
    sequence: list[tuple[int, str]],
) -> None:
    """In any order, duplicated: once a firing or a resolve that started later was delivered, a
    firing or resolve of an earlier start changes nothing at all (nothing is even written): it
    never pages, never closes."""
    latest = -1
    for (e, _), (before, after, notes) in zip(sequence, _deliver(sequence), strict=True):
        if e < latest:
            assert after is before and not notes
        latest = max(latest, e)


@given(st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(STATUSES)), max_size=16)
))  # fmt: skip
def test_the_exact_rule(sequence: list[tuple[int, str]]) -> None:
    """In any order, duplicated: a firing pages exactly when the alert does not fire and it
    started no earlier than every resolve delivered before it (the same start pages: the window
    of a copy after its own resolve); a resolve closes exactly when the alert fires and it
    started no earlier than every firing delivered since the one that opened the incident."""
    resolves: list[int] = []
    since: list[int] = []  # the starts of the firings delivered since the one that paged
    for (e, status), (before, after, notes) in zip(sequence, _deliver(sequence), strict=True):
        fired = F in before.firing
        if status == "firing":
            pages = not fired and e >= max(resolves, default=e)
            assert bool(notes) == pages
            since = [e] if pages else [*since, e] if fired else since
        else:
            resolves.append(e)
            closes = fired and e >= max(since)
            assert (before.incident is not None and after.incident is None) == closes
            assert not notes


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
