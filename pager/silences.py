"""Silences: spans of time in which a service pages nobody, and when the quiet in force ends.

A silence holds pages back; it never drops an alert. What silences a service at a moment comes
from *sources*, each a pure function `Quiet` of the time: None if it silences nothing then,
else until when. Durable silences (`pager silence`, kept in `ServiceState.silences`) are one
source (`spans`); recurring maintenance windows of the config (`[[services.X.maintenance]]`)
are another (`recurring`), handed to `decide` as its `windows`. `silenced_until` joins any
number of them into one answer: the end of the union of every span in force at that moment,
followed for as long as spans overlap or touch. `decide` asks it at the only moments a page
could be sent (an incident opens, a step is due); `pager.simulate` asks it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs

from pager.timefmt import duration, timestamp
from pager.weekly import Weekly, maintenance

MAX_SILENCES: Final = 100
"""Silences a service may have in force or to come at once: a list kept in its state and
shown in every status, so it is bounded; one more is refused (`too_many_silences`)."""
MAX_SILENCE_SECONDS: Final = 90 * 86400.0
"""How far ahead a silence may end (and start): a silence of months is a service nobody should
be paged for, which is a config change, not a silence (and a typo of `--for 200d` is caught)."""
MAX_REASON: Final = 1024
"""Characters of a silence's reason kept: a longer one is cut, with a marker."""
MAX_CHAIN: Final = 1000
"""Spans `silenced_until` follows from one to the next at most: recurring windows that touch
for ever end somewhere (the quiet is looked at again when that end comes)."""
MAX_AHEAD: Final = MAX_SILENCE_SECONDS
"""How far past the moment asked about `silenced_until` follows spans that run into one
another: the first end beyond it is given. The quiet is looked at again when that end comes
(and the step held on if it goes on), so nothing pages early; and maintenance windows in force
every hour of the week cost two looks, not `MAX_CHAIN` (each look reads up to eight weeks of
windows: `pager.weekly.LONGEST_RUN`)."""

LONG_SILENCE: Final = 86400.0
"""A silence longer than this is warned of by `pager silence` (`long_silence`): `--until` without
`--from` starts now, so a date meant as the end of a night's window silences everything until
then."""

Quiet: TypeAlias = Callable[[float], float | None]
"""A source of silence: at time `t`, None if it silences nothing then, else until when (a
time after `t`)."""


@attrs.frozen
class Silence:
    """One durable silence of one service: from `starts_at` to `ends_at`, or to `ended_at` if
    it was ended early (`pager silence end`), for `reason`, asked for by `by`.

    Times are in the daemon's frame, as every time it records."""

    id: int
    starts_at: float
    ends_at: float
    reason: str
    by: str | None
    created_at: float
    ended_at: float | None = None
    ended_by: str | None = None

    @property
    def until(self) -> float:
        """When it stops silencing: its end, or when it was ended, whichever came first."""
        if self.ended_at is not None and self.ended_at < self.ends_at:
            return self.ended_at
        return self.ends_at

    def in_force(self, at: float) -> bool:
        return self.starts_at <= at < self.until

    def over(self, at: float) -> bool:
        """It silences nothing at `at` or after (ended, or past its end)."""
        return self.until <= at or self.until <= self.starts_at


HeldBy: TypeAlias = Literal["silence", "maintenance window"]
"""What holds paging, in the words people read: a durable silence, or a maintenance window (the
only other source of quiet `decide` is given)."""


def holder(silences: Iterable[Silence], at: float) -> HeldBy:
    """What holds a step at `at`: a durable silence if one is in force then, else a maintenance
    window (a hold with neither in force is none: `decide` holds only while quiet)."""
    return "silence" if any(s.in_force(at) for s in silences) else "maintenance window"


def released_by(silences: Iterable[Silence], until: float) -> HeldBy:
    """What a hold that ended at `until` (the held step's deadline: the end of the quiet) ended
    with: a durable silence that ended then, else the maintenance windows."""
    return (
        "silence" if any(abs(s.until - until) < 0.001 for s in silences) else "maintenance window"
    )


def spans(silences: Iterable[Silence]) -> Quiet:
    """`silences` as a source: at `t`, the latest end of those in force then."""
    kept = tuple(silences)

    def quiet(at: float) -> float | None:
        return max((s.until for s in kept if s.in_force(at)), default=None)

    return quiet


def recurring(windows: Sequence[Weekly], offset: float = 0.0) -> Quiet | None:
    """A service's recurring maintenance windows as a source: at `t`, the end of the windows in
    force then (windows that run into one another are one: `pager.weekly.maintenance`), None
    if none is. `t` is in a frame `offset` seconds behind the wall clock the windows are
    written on (pagerd's frame: its `Clock.offset`); the end is given back in that frame. None
    without windows, so that `decide` has nothing to look at."""
    if not windows:
        return None
    kept = tuple(windows)

    def quiet(at: float) -> float | None:
        status = maintenance(kept, at + offset)
        if not status.in_force or status.ends_at is None:
            return None
        return status.ends_at - offset

    return quiet


def silenced_until(at: float, sources: Iterable[Quiet | None]) -> float | None:
    """The end of the quiet in force at `at`, None if nothing silences then: the union of the
    spans of every source, followed while one starts at or before the end of another (two
    silences 10:00-11:00 and 11:00-12:00 silence until 12:00)."""
    given = [source for source in sources if source is not None]
    until: float | None = None
    t = at
    for _ in range(MAX_CHAIN):
        end = max((e for source in given if (e := source(t)) is not None and e > t), default=None)
        if end is None:
            break
        t = until = end
        if end - at > MAX_AHEAD:
            break
    return until


def live(silences: Iterable[Silence], at: float) -> tuple[Silence, ...]:
    """The silences still in force or to come at `at` (neither ended nor past their end)."""
    return tuple(s for s in silences if not s.over(at))


def long_silence(silence: Mapping[str, Any]) -> str | None:
    """The warning `pager silence` prints for a silence (as the protocol shows one) longer than
    `LONG_SILENCE`; None otherwise, or if its times cannot be read."""
    try:
        start, end = timestamp(str(silence["from"])), timestamp(str(silence["until"]))
    except (KeyError, ValueError):
        return None
    if end - start <= LONG_SILENCE:
        return None
    return (
        f"silence {silence.get('id')} pages nobody for {silence.get('service')} for"
        f" {duration(round(end - start))}, from {silence['from']} until {silence['until']}"
        f" (--until without --from starts now); if that is not what was meant, end it: pager"
        f" silence end {silence.get('id')}"
    )
