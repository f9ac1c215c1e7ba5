"""Events as they cross between pagerd's processes and nodes: one codec for all of them.

Two ways use it: the private channel between the core and its HTTP front processes
(`pagerd.front.http.channel`), and the inbox through which any node of a cluster hands an event
to the owner of its service (`pagerd.engine.inbox`). Both carry what a client sent, so the codec
covers every event a way in sends — alerts, acks (with the incident they name and how they came),
resolves, check-ins, healthies, silences started and ended — and refuses the rest (a deadline's
events are the owner's own: they never cross).

A `WireEvent` is a compact msgspec array. Times inside a silence are in the frame of the process
that encoded it; the node of a cluster that decodes it has a frame of its own, so the codec takes
each side's `offset` (what its frame adds to reach the wall clock, `Clock.offset`): the times
cross on the wall clock. Pure: no clock is read here, no I/O.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from pager.domain import (
    Ack,
    Alert,
    EndSilence,
    Event,
    Healthy,
    Heartbeat,
    Resolve,
    Source,
    StartSilence,
)
from pager.silences import Silence

Submission: TypeAlias = tuple[str | None, Event]
"""An event and the service it is for (None: the one with its source firing)."""


class WireEvent(msgspec.Struct, array_like=True):
    """One `Submission`: the service (None: the one with `source` firing), what the event is,
    its text (an alert's message; who acks, closes, checks in or ends a silence), its source
    (integration, key), its sender's `startsAt` (an alert's, a resolve's), the incident it names
    (an ack's, a healthy's), how an ack came (`via`), and a silence (started: all of it, its
    times on the wall clock; ended: its id alone)."""

    service: str | None
    kind: str
    text: str | None = None
    source: tuple[str, str] | None = None
    starts_at: int | None = None
    incident: int | None = None
    via: str | None = None
    silence: tuple[int, float, float, str, str | None, float] | None = None
    """(id, starts_at, ends_at, reason, by, created_at) of a silence started."""
    silence_id: int | None = None
    """The silence ended."""


def to_wire(submission: Submission, offset: float = 0.0) -> WireEvent:
    """A submission as it crosses (a silence's times taken to the wall clock by `offset`);
    `ValueError` for an event no way in sends (a deadline's)."""
    service, event = submission
    if isinstance(event, Alert):
        return WireEvent(service, "alert", event.message, _source(event.source), event.starts_at)
    if isinstance(event, Ack):
        return WireEvent(
            service, "ack", event.by, _source(event.source), None, event.incident, event.via
        )
    if isinstance(event, Resolve):
        return WireEvent(service, "resolve", None, _source(event.source), event.starts_at)
    if isinstance(event, Heartbeat):
        return WireEvent(service, "heartbeat", event.by)
    if isinstance(event, Healthy):
        return WireEvent(service, "healthy", event.by, None, None, event.incident)
    if isinstance(event, StartSilence):
        s = event.silence
        if s.ended_at is not None:
            raise ValueError("a silence is started in force, never ended already")
        shown = (
            s.id,
            s.starts_at + offset,
            s.ends_at + offset,
            s.reason,
            s.by,
            s.created_at + offset,
        )
        return WireEvent(service, "silence", silence=shown)
    if isinstance(event, EndSilence):
        return WireEvent(service, "silence_end", event.by, silence_id=event.id)
    raise ValueError(f"{type(event).__name__} is not an event a way in sends")


def from_wire(wire: WireEvent, offset: float = 0.0) -> Submission:
    """The submission a `WireEvent` is (a silence's times taken into the frame whose `offset`
    is given); `ValueError` if it is none."""
    source = None if wire.source is None else Source(*wire.source)
    event: Event
    if wire.kind == "alert":
        event = Alert(wire.text or "", source, wire.starts_at)
    elif wire.kind == "ack":
        event = Ack(wire.text, source, incident=wire.incident, via=wire.via)
    elif wire.kind == "resolve":
        if source is None:
            raise ValueError("a resolve without its source")
        event = Resolve(source, wire.starts_at)
    elif wire.kind == "heartbeat":
        event = Heartbeat(wire.text)
    elif wire.kind == "healthy":
        event = Healthy(wire.text, incident=wire.incident)
    elif wire.kind == "silence":
        if wire.silence is None:
            raise ValueError("a silence without its silence")
        id, starts, ends, reason, by, created = wire.silence
        event = StartSilence(
            Silence(id, starts - offset, ends - offset, reason, by, created - offset)
        )
    elif wire.kind == "silence_end":
        if wire.silence_id is None:
            raise ValueError("a silence's end without its id")
        event = EndSilence(wire.silence_id, wire.text)
    else:
        raise ValueError(f"unknown event kind {wire.kind[:32]!r}")
    return wire.service, event


def _source(source: Source | None) -> tuple[str, str] | None:
    return None if source is None else (source.integration, source.key)
