"""The rules of paging, as a pure state machine.

`decide(state, event, now, policy)` is the whole of what pagerd decides: given one service's
state, one event and the current time, it returns the service's next state and the
notifications to send. It performs no I/O and reads no clock, so the same inputs always give the
same outputs; the daemon around it persists the result before acting on it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final, TypeAlias
from urllib.parse import urlsplit

import attrs

from pager.silences import MAX_SILENCES, Quiet, Silence, live, silenced_until, spans
from pager.timefmt import duration

DEFAULT_ACK_TIMEOUT: Final = 15 * 60.0
MAX_FIRING: Final = 1000
"""Alerts a service may have firing through integrations at once (`ServiceState.firing`): the
set is kept in memory and on disk, so it is bounded; one more is refused (`too_many_alerts`)."""
RESOLVED_FOR: Final = 3600.0
"""Seconds pagerd remembers the `startsAt` an integration's alert resolved with
(`ServiceState.started`), to tell a copy of an earlier firing from a new firing: an hour
outlasts every late copy Alertmanager makes (a retry lasts at most its `group_interval`; a
cluster peer that missed the resolve stops once the alert's own `endsAt` passes, minutes
later)."""
MAX_RESOLVED: Final = 1000
"""Resolved alerts remembered per service and integration; one more forgets the oldest. What is
forgotten is never silenced: a late copy of its firing pages, as it did before pagerd
remembered anything."""
MAX_SERVICE_NAME: Final = 128
SERVICE_NAME_RE: Final = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_SERVICE_NAME}}}")
CHANNELS: Final = ("email", "sms", "slack", "webhook")
REFERENCES: Final = ("person", "schedule")
"""Targets that name somebody rather than an address: resolved when their level is notified
(see `Resolver`)."""
SLACK_APP: Final = "app"
"""The address of the target `slack:app`: the channel of the Slack app (`[channels.slack]
channel`), posted to with its bot token, rather than an incoming webhook's URL."""

_EMAIL_RE: Final = re.compile(r"[^@\s:]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_E164_RE: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_URL_RE: Final = re.compile(r"https?://[^/\s?#]+(?:[/?#]\S*)?")
# One label of a host name (underscores too: some internal names have them).
_LABEL_RE: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def url_problem(url: str) -> str | None:
    """Why `url` is not an http(s) URL that can be sent to, or None: a host that is a valid
    name or IP address, and a port, if given, from 1 to 65535. (Such URLs once passed `--check`
    and were retried for 45 minutes; `:0` even went to port 80.) Never quotes the URL: it may
    be a secret."""
    if _URL_RE.fullmatch(url) is None:
        return "not an http:// or https:// URL"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a usable URL: its host is not a valid IPv6 address in [brackets]"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "not a usable URL: its port must be a number from 1 to 65535"
    host = parts.hostname
    if not host:
        return "not a usable URL: it has no host"
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            return "not a usable URL: its host is not a valid IPv6 address in [brackets]"
        return None
    try:
        labels = host.encode("idna").decode("ascii").removesuffix(".").split(".")
        for label in labels:
            if _LABEL_RE.fullmatch(label) is None:
                raise UnicodeError(label)
            if label.lower().startswith("xn--"):
                label.encode("ascii").decode("idna")
    except UnicodeError:
        return "not a usable URL: its host is not a valid host name"
    return None


def is_service_name(name: str) -> bool:
    return SERVICE_NAME_RE.fullmatch(name) is not None


@attrs.frozen(repr=False)
class Target:
    """Somebody to notify, on one channel: `email:alice@example.com`, `sms:+14155550100`."""

    channel: str
    address: str

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse `CHANNEL:ADDRESS`; a `ValueError` says what is wrong in words an operator reads."""
        channel, sep, address = text.partition(":")
        if not sep or not address:
            raise ValueError(f"expected CHANNEL:ADDRESS with CHANNEL one of {', '.join(CHANNELS)}")
        if channel == "email":
            if _EMAIL_RE.fullmatch(address) is None:
                raise ValueError("not an email address")
        elif channel == "sms":
            if _E164_RE.fullmatch(address) is None:
                raise ValueError("not an E.164 phone number")
        elif channel == "slack" and address == SLACK_APP:
            pass
        elif channel in ("slack", "webhook"):
            if (problem := url_problem(address)) is not None:
                raise ValueError(problem)
        elif channel in REFERENCES:
            if not is_service_name(address):
                raise ValueError(f"a {channel} name is 1 to 128 letters, digits, '.', '_' or '-'")
        else:
            kinds = ", ".join((*CHANNELS, *REFERENCES))
            raise ValueError(f"unknown channel {channel!r} (expected one of {kinds})")
        return cls(channel, address)

    def __str__(self) -> str:
        """The target as it may be shown: logs, ids, status. A webhook URL is a secret (whoever
        has it can post), so it is shown as its host and a digest, never whole."""
        if self.channel in ("slack", "webhook") and self.address != SLACK_APP:
            scheme, _, rest = self.address.partition("://")
            host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
            digest = hashlib.sha256(self.address.encode()).hexdigest()[:12]
            return f"{self.channel}:{scheme}://{host}/...#{digest}"
        if self.channel not in CHANNELS and self.channel not in REFERENCES:
            # A channel of a newer pagerd (a row read back after a downgrade): its address may
            # be a secret like a webhook's, so only its digest is shown.
            digest = hashlib.sha256(self.address.encode()).hexdigest()[:12]
            return f"{self.channel}:...#{digest}"
        return f"{self.channel}:{self.address}"

    def __repr__(self) -> str:
        return f"Target({str(self)!r})"

    @property
    def is_reference(self) -> bool:
        """A person or a schedule, not an address: resolved when notified."""
        return self.channel in REFERENCES


@attrs.frozen
class Contact:
    """One address to notify for a target, `delay` seconds after its level is notified. `step`
    numbers the address's repeats within one person's rule ("sms, then sms again after 5m":
    1, then 2); `via` says how it was reached ("schedule:payments-primary → alice")."""

    target: Target
    delay: float = 0.0
    step: int = 1
    via: str = ""


@attrs.frozen
class Resolution:
    """What one target means at an instant: its contacts, or none and `nobody`, the reason."""

    contacts: tuple[Contact, ...]
    nobody: str | None = None


Resolver: TypeAlias = Callable[[Target, float], Resolution]
"""Resolves a level's target at `now` (decide's time): given to `decide` by the shell, which
builds it from its config and stored overrides (`pager.people.Directory`). Pure: the same
target and time always give the same resolution."""


def _unique(targets: Iterable[Target]) -> tuple[Target, ...]:
    # A target listed twice in one level is one person: notify them once for that step.
    return tuple(dict.fromkeys(targets))


@attrs.frozen
class Level:
    targets: tuple[Target, ...] = attrs.field(converter=_unique)
    ack_timeout: float = DEFAULT_ACK_TIMEOUT


@attrs.frozen
class Policy:
    """Who is notified, in which order: levels tried one after another, `repeat` more rounds."""

    levels: tuple[Level, ...]
    repeat: int = 0
    ack_expiry: float | None = None
    """How long an acknowledgement holds: an incident still open that long after its ack is
    acknowledged no more, and escalation restarts from level 1 (`AckExpired`). None: for ever."""
    allow_resolve: bool = True
    """Whether a person paged may close the incident from the page itself (a Resolve link or
    button, an SMS's "c" reply), not only acknowledge it. `decide` does not read it: the pages
    leave the Resolve out, and the daemon's actor refuses a page's resolve (`not_allowed`)."""


@attrs.frozen
class Incident:
    """An open incident: the service went unhealthy and has not recovered yet.

    `round` and `level` (both 1-based) name the last escalation step notified; `deadline` is when
    that step's acknowledgement timeout passes, `None` once nothing more will be sent.
    """

    number: int
    opened_at: float
    message: str
    alerts: int = 1
    round: int = 1
    level: int = 1
    deadline: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    exhausted: bool = False
    heartbeat_only: bool = False
    """Open only because the service's heartbeat was missed: its next check-in closes it. An
    ordinary alert on it clears this (see "Heartbeats" below); the last `Resolve` of an
    incident that a miss still holds sets it again."""
    held_by_alert: bool = False
    """A plain alert (one without a `Source`: the socket, `pager alert`, REST, cron) opened it or
    came to it while open. Nothing resolves such an alert but `Healthy`, so no integration's
    `Resolve` closes the incident once this is set (see `decide`)."""
    acknowledged_via: str | None = None
    """How the acknowledgement came (`socket`, an integration's name, `link`, `sms`, `slack`,
    `console`): what a later ack is told with who was first."""
    round_base: int = 0
    """Rounds done before the escalation now running began: 0, or the round an expired
    acknowledgement stopped (escalation restarts at the next round, level 1, and `repeat`
    counts from here: the notifications of each restart have ids of their own)."""
    silenced: bool = False
    """Its next step is held by a silence (see "Silences" below): `deadline` is when the quiet
    known at the time ends, and the step's `Timeout` is looked at whenever it comes, early too
    (a silence ended early hands it over at once). An incident opened while silenced is held
    before its first step: `level` 0, nobody notified yet (as is the restart of an expired
    acknowledgement held by a silence, at its new round)."""

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def counted(self) -> Incident:
        """This incident with one more alert.

        `attrs.evolve(self, alerts=self.alerts + 1)`, spelled out: in a storm nearly every alert
        comes here, and evolve's generic copy costs four times as much. A test holds the two
        equal for every field.
        """
        return Incident(
            self.number, self.opened_at, self.message, self.alerts + 1, self.round, self.level,
            self.deadline, self.acknowledged_at, self.acknowledged_by, self.exhausted,
            self.heartbeat_only, self.held_by_alert, self.acknowledged_via, self.round_base,
            self.silenced,
        )  # fmt: skip


@attrs.frozen
class Monitor:
    """A service's heartbeat monitor (a dead man's switch), armed by its first check-in.

    `interval` is the one in force at the last check-in (a changed config applies from the
    next), `last_at` that check-in's time, and `due_at` when the next is due: None once it was
    missed, until a check-in (or `Healthy`) arms it again, so one silence pages once.
    """

    interval: float
    due_at: float | None
    last_at: float | None = None

    @property
    def missed(self) -> bool:
        return self.due_at is None


def incident_id(service: str, number: int) -> str:
    return f"{service}#{number}"


@attrs.frozen
class Source:
    """One alert as a sender that resolves its own alerts names it: the integration it came
    through and its key there (an Alertmanager fingerprint, an Events v2 dedup_key)."""

    integration: str
    key: str


@attrs.frozen
class Started:
    """When one alert of an integration started, in its sender's words: its `startsAt`, in
    nanoseconds since the epoch on the sender's clock, and, once its resolve was taken, when
    that was on pagerd's clock (`resolved_at`; None while it fires).

    A `startsAt` is only ever compared with another `startsAt` of the same alert, never with
    pagerd's clock, so a sender's clock that is off cannot silence anything; `resolved_at` is
    only compared with pagerd's own `now`, to forget after `RESOLVED_FOR`."""

    starts_at: int
    resolved_at: float | None = None


NOTHING_STARTED: Final[Mapping[Source, Started]] = MappingProxyType({})


@attrs.frozen
class ServiceState:
    """One service as the pager knows it. Healthy exactly when `incident` is None.

    `last_incident` counts the service's incidents so that each gets a new number, open or not.
    `firing` is what integrations still report firing for the open incident (empty when healthy):
    a `Resolve` closes the incident only when it takes the last one out and nothing else holds
    it open: not a plain alert (`Incident.held_by_alert`), not a missed heartbeat.
    """

    name: str
    last_incident: int = 0
    incident: Incident | None = None
    firing: frozenset[Source] = frozenset()
    heartbeat: Monitor | None = None
    """The service's heartbeat monitor, once it has checked in (see "Heartbeats" below)."""
    started: Mapping[Source, Started] = attrs.field(default=NOTHING_STARTED, hash=False)
    """The latest `startsAt` known of each alert firing (those whose sender gives one), and of
    each resolved within `RESOLVED_FOR` (at most `MAX_RESOLVED` per integration): what tells
    a copy of an earlier firing, or a resolve of one, from the alert's latest firing (see "Late
    firings" below)."""
    silences: tuple[Silence, ...] = ()
    """Its durable silences (see "Silences" below): those in force or to come, and those over
    since the last one was started (kept until then, so that the store sees how they ended)."""

    @property
    def healthy(self) -> bool:
        return self.incident is None


# Events -------------------------------------------------------------------------------------


@attrs.frozen
class Alert:
    """Something is wrong. With a `source`, the alert stays firing until a `Resolve` of that
    source: a repeat of one already firing (a resend, a redelivery) changes nothing. With a
    `starts_at` too (the sender's `startsAt`, nanoseconds since the epoch on its clock), a
    firing that started before the one its alert last resolved with is a copy of an earlier
    firing, and changes nothing either; one that started at the same time pages (see "Late
    firings" below)."""

    message: str = ""
    source: Source | None = None
    starts_at: int | None = None


@attrs.frozen
class Ack:
    """Acknowledge the open incident. With a `source`, only while that source is firing (an
    Events v2 acknowledge of a dedup_key that is not open changes nothing, as at PagerDuty).
    With an `incident` number, only that incident: an answer to one page (an SMS reply code, a
    Slack button, a link) is refused once that incident has closed, never taken by the next.
    An incident acknowledged already stays as it is: the first ack wins, whichever way it came.
    `via` says how it came (`socket`, an integration's name, `link`, `sms`, `slack`,
    `console`), kept with the acknowledgement to tell a later ack who was first; the daemon's
    actor fills it from how the event was routed (its `Envelope`), so it has one source."""

    by: str | None = None
    source: Source | None = None
    incident: int | None = attrs.field(default=None, kw_only=True)
    via: str | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Healthy:
    """The service is healthy: the open incident closes, whatever is still firing (which is
    forgotten: an alert firing again afterwards opens a new incident). `by` names who said so,
    for the history, where a person did (a resolve from the console, a link, a phone). With an
    `incident` number (a person closing the incident a page named), only while that one is open."""

    by: str | None = None
    incident: int | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Resolve:
    """One source stopped firing. The service is healthy once none is left and nothing else
    holds the incident open (a plain alert, which only `Healthy` ends; a missed heartbeat,
    which a check-in ends); a source that is not firing (resolved already, or never seen)
    changes nothing, but its `starts_at` is remembered; a resolve that started before the
    firing of its source that pagerd holds is of an earlier firing, and changes nothing either
    (see "Late firings" below)."""

    source: Source
    starts_at: int | None = None
    """The sender's `startsAt` of the alert that resolved, if it gives one."""


@attrs.frozen
class Timeout:
    """The acknowledgement timeout of one escalation step passed.

    It names the step it was set for, so that a timer outliving its step (acked, recovered, or
    already escalated) is recognised as stale and pages nobody.
    """

    incident: int
    round: int
    level: int


@attrs.frozen
class AckExpired:
    """The policy's `ack_expiry` passed since the incident was acknowledged (from the scheduler,
    as `Timeout` is). It names the acknowledgement it was set for, so that one outliving it (the
    incident closed, or acknowledged again after an earlier expiry) is recognised as stale."""

    incident: int
    acknowledged_at: float


# Heartbeats (a dead man's switch) ----------------------------------------------------------


@attrs.frozen
class Heartbeat:
    """A check-in: the service is alive (`pager heartbeat`, the socket op `heartbeat`, `POST
    /heartbeat/SERVICE`, or an integration's always-firing alert such as Alertmanager's
    Watchdog). `by` names who checked in, for the history when the check-in changes something."""

    by: str | None = None


@attrs.frozen
class HeartbeatMissed:
    """The heartbeat deadline `due_at` passed (from the scheduler, as `Timeout` is). It names
    the deadline it was set for, so that one a check-in has since moved is stale."""

    due_at: float


# Silences ----------------------------------------------------------------------------------


@attrs.frozen
class StartSilence:
    """Silence the service (`pager silence`): the silence, its id and times chosen by the
    daemon. Refused if it would end by now, or the service has `MAX_SILENCES` to come."""

    silence: Silence


@attrs.frozen
class EndSilence:
    """End silence `id` now (`pager silence end`), as its natural end would."""

    id: int
    by: str | None = None


Event: TypeAlias = (
    Alert | Ack | Healthy | Resolve | Timeout | Heartbeat | HeartbeatMissed | AckExpired
    | StartSilence | EndSilence
)  # fmt: skip


# Commands -----------------------------------------------------------------------------------


@attrs.frozen
class Notify:
    """Notify one target for one escalation step; one per (incident, round, level, target)."""

    service: str
    incident: int
    round: int
    level: int
    target: Target
    message: str
    opened_at: float
    origin: str = attrs.field(default="", kw_only=True)
    """Which run of pagerd decided it (random, stored with it): the core leaves it empty, the
    daemon sets it. Part of `key`, so that a database restored from an old backup, which numbers
    incidents again from where the backup stood, never gives a new page an old page's key."""
    step: int = attrs.field(default=1, kw_only=True)
    """The target's repeat within one person's rule (`Contact.step`): 2 and on are in the id."""
    via: str = attrs.field(default="", kw_only=True)
    """How the target was reached, when a person or a schedule was resolved to it
    ("schedule:payments-primary → alice"), for the history; empty for a plain address."""
    not_before: float | None = attrs.field(default=None, kw_only=True)
    """Not sent before this time (a delayed step of a person's rule): the outbox holds it, as
    it holds a retry, and cancels it as any unsent page if the incident is acknowledged or
    closed before then."""
    incident_opened_at: float | None = attrs.field(default=None, kw_only=True)
    """The incident's `opened_at` as stored, in pagerd's frame, when `opened_at` was moved to
    the wall clock to be shown (the outbox does so as it hands a page to its transport); None:
    `opened_at` is the stored one. What a page's links name the incident by (`opened`)."""

    @property
    def id(self) -> str:
        """The notification as people and the database name it, stable across restarts."""
        base = f"{incident_id(self.service, self.incident)}/{self.round}/{self.level}/{self.target}"
        return base if self.step == 1 else f"{base}/{self.step}"

    @property
    def key(self) -> str:
        """The idempotency key providers see (Message-ID, Idempotency-Key, Twilio's token): the
        id and the origin, both stored with the notification, so a re-send keeps its key and
        no other notification ever has it. A notification of a pagerd before origins: its id."""
        return f"{self.id}~{self.origin}" if self.origin else self.id

    @property
    def incident_id(self) -> str:
        return incident_id(self.service, self.incident)

    @property
    def opened(self) -> float:
        """When the incident opened as pagerd stores it (its frame): the same float whatever
        the wall clock did since, and across restarts, so a link that names it by this time
        names exactly the stored incident (and never another of the same number, as a
        database restored from an old backup numbers them again)."""
        return self.opened_at if self.incident_opened_at is None else self.incident_opened_at

    @property
    def person(self) -> str:
        """The person a `person:` or `schedule:` target was resolved to (`alice`, from `via`:
        `person:alice`, `schedule:payments-primary → alice`); empty for a plain address."""
        via = self.via
        if " → " in via:
            return via.rpartition(" → ")[2]
        if via.startswith("person:"):
            return via.removeprefix("person:")
        return ""


class Rejected(Exception):
    """The event cannot apply to this state; nothing changed. `code` is the protocol's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Decision: TypeAlias = tuple[ServiceState, tuple[Notify, ...]]


@attrs.frozen
class Unreached:
    """A level whose people or schedules resolved to nobody when it was notified: `reasons`
    says which and why. `skipped` when the whole level had nobody to notify, so escalation
    moved on to the next level at once (or the incident was exhausted)."""

    round: int
    level: int
    reasons: tuple[str, ...]
    skipped: bool


Decided: TypeAlias = tuple[ServiceState, tuple[Notify, ...], tuple[Unreached, ...]]


def decide(
    state: ServiceState,
    event: Event,
    now: float,
    policy: Policy,
    heartbeat: float | None = None,
    *,
    resolve: Resolver | None = None,
    windows: Quiet | None = None,
) -> Decision:
    """Apply one event to one service at time `now` (seconds since the epoch). `heartbeat` is
    the service's configured heartbeat interval, None if it has none. `resolve` turns a level's
    `person:` and `schedule:` targets into addresses at `now` (without it, they reach nobody).
    `windows` silences the service besides its own durable silences (its recurring maintenance
    windows), None if nothing does (see "Silences" below).

    Raises `Rejected` when the event is refused; the state is then unchanged.
    """
    after, notes, _ = decide_with(
        state, event, now, policy, heartbeat, resolve=resolve, windows=windows
    )
    return after, notes


def decide_with(
    state: ServiceState,
    event: Event,
    now: float,
    policy: Policy,
    heartbeat: float | None = None,
    *,
    resolve: Resolver | None = None,
    windows: Quiet | None = None,
) -> Decided:
    """`decide`, also telling which levels reached nobody (`Unreached`), for the history, the
    log and the metrics."""
    unreached: list[Unreached] = []
    after, notes = _decide(state, event, now, policy, heartbeat, resolve, windows, unreached)
    return after, notes, tuple(unreached)


def _decide(
    state: ServiceState,
    event: Event,
    now: float,
    policy: Policy,
    heartbeat: float | None,
    resolve: Resolver | None,
    windows: Quiet | None,
    unreached: list[Unreached],
) -> Decision:
    incident = state.incident
    match event:
        case Alert(message=message, source=source, starts_at=starts_at):
            firing, started = state.firing, state.started
            if source is not None:
                if source in firing:
                    # Still firing: counted when it first fired.
                    return _started_later(state, source, starts_at), ()
                if stale(state, source, starts_at, now):
                    return state, ()
                if len(firing) >= MAX_FIRING:
                    raise Rejected(
                        "too_many_alerts",
                        f"{state.name} has {len(firing)} alerts firing through integrations,"
                        f" the most pagerd keeps: resolve some first",
                    )
                firing = firing | {source}
                if starts_at is not None or source in started:
                    started = _put(started, source, _started(starts_at))
            if incident is None:
                number = state.last_incident + 1
                opened = Incident(
                    number=number,
                    opened_at=now,
                    message=message,
                    level=0,
                    held_by_alert=source is None,
                )
                state = attrs.evolve(state, last_incident=number, firing=firing, started=started)
                return _due(state, opened, now, policy, windows, resolve, unreached)
            counted = incident.counted()
            if counted.heartbeat_only or (source is None and not counted.held_by_alert):
                # Now open for an alert too: a check-in no longer closes it; and a plain alert
                # holds it until `healthy`, whatever integrations resolve.
                counted = attrs.evolve(
                    counted, heartbeat_only=False, held_by_alert=counted.held_by_alert or not source
                )
            # Not attrs.evolve for the state either: see `Incident.counted`.
            state = ServiceState(
                state.name,
                state.last_incident,
                counted,
                firing,
                state.heartbeat,
                started,
                state.silences,
            )
            return state, ()
        case Ack(by=by, source=source, incident=number, via=via):
            if source is not None and source not in state.firing:
                return state, ()
            _named(state, number)
            if incident is None:
                raise Rejected("no_open_incident", f"{state.name} has no open incident to ack")
            if incident.acknowledged:
                return state, ()
            expiry = policy.ack_expiry
            acked = attrs.evolve(
                incident,
                acknowledged_at=now,
                acknowledged_by=by,
                acknowledged_via=via,
                deadline=None if expiry is None else now + expiry,
                silenced=False,
            )
            return attrs.evolve(state, incident=acked), ()
        case Healthy(incident=number):
            _named(state, number)
            return _closed(state, now, heartbeat), ()
        case Resolve(source=source, starts_at=starts_at):
            if source not in state.firing:
                return _resolved_again(state, source, starts_at, now), ()
            if stale_resolve(state, source, starts_at):
                return state, ()  # an earlier firing's: the one that fires goes on
            firing = state.firing - {source}
            started = _resolved(state.started, source, starts_at, now)
            if firing or incident is None:
                return attrs.evolve(state, firing=firing, started=started), ()
            if incident.held_by_alert:
                # A plain alert holds it: the integration's own alert is over, the incident is
                # not (docs/guarantees.md: "closes only what nothing else holds open").
                return attrs.evolve(state, firing=firing, started=started), ()
            monitor = state.heartbeat
            if heartbeat is not None and monitor is not None and monitor.missed:
                # The heartbeat is still missing: open for that alone now, the check-in ends it.
                held = attrs.evolve(incident, heartbeat_only=True)
                return attrs.evolve(state, incident=held, firing=firing, started=started), ()
            return _closed(attrs.evolve(state, firing=firing, started=started), now, heartbeat), ()
        case Timeout():
            if incident is None or incident.deadline is None:
                return state, ()
            if now < incident.deadline and not incident.silenced:
                return state, ()
            if incident.acknowledged:
                return state, ()  # its deadline is the ack's expiry now: `AckExpired` is due
            if (event.incident, event.round, event.level) != (
                incident.number,
                incident.round,
                incident.level,
            ):
                return state, ()
            return _due(state, incident, now, policy, windows, resolve, unreached)
        case Heartbeat():
            return _check_in(state, now, heartbeat)
        case HeartbeatMissed(due_at=due_at):
            return _missed(state, due_at, now, policy, heartbeat, windows, resolve, unreached)
        case AckExpired():
            return _ack_expired(state, event, now, policy, windows, resolve, unreached)
        case StartSilence(silence=silence):
            return _silence(state, silence, now, policy, windows, resolve, unreached)
        case EndSilence(id=number, by=by):
            return _end_silence(state, number, by, now, policy, windows, resolve, unreached)
    raise TypeError(f"not an event: {event!r}")


def _named(state: ServiceState, number: int | None) -> None:
    """Refuse an answer to incident `number` (if the event names one) unless it is the open one."""
    if number is not None and (state.incident is None or state.incident.number != number):
        raise Rejected("no_open_incident", f"{incident_id(state.name, number)} is closed")


def _ack_expired(
    state: ServiceState,
    event: AckExpired,
    now: float,
    policy: Policy,
    windows: Quiet | None,
    resolve: Resolver | None,
    unreached: list[Unreached],
) -> Decision:
    """An acknowledgement that outlived the policy's `ack_expiry`: the incident, still open, is
    acknowledged no more, and escalation restarts at level 1 of the next round (`round_base`
    keeps `repeat` counting from there). The restart is a step like any other: a silence in
    force holds it (before level 1 of its round, as an incident opened while silenced is) until
    the quiet ends, and its `schedule:` targets are resolved when it is taken (`now`), not when
    the incident was acknowledged: whoever is on call at the expiry is paged."""
    incident = state.incident
    if (
        incident is None
        or incident.number != event.incident
        or incident.acknowledged_at != event.acknowledged_at
        or incident.deadline is None
        or now < incident.deadline
    ):
        return state, ()  # stale, or early
    if policy.ack_expiry is None:
        # A reload took `ack_expiry` away since the ack: it holds for good now.
        return attrs.evolve(state, incident=attrs.evolve(incident, deadline=None)), ()
    restarted = attrs.evolve(
        incident,
        acknowledged_at=None,
        acknowledged_by=None,
        acknowledged_via=None,
        exhausted=False,
        round=incident.round + 1,
        level=0,  # before its first step: `_due` notifies level 1 of the new round
        round_base=incident.round,
    )
    return _due(state, restarted, now, policy, windows, resolve, unreached)


def closed(state: ServiceState) -> ServiceState:
    """`state` with its incident closed, and nothing left firing (what is remembered of
    resolved alerts stays: see "Late firings" below)."""
    started = state.started
    if any(seen.resolved_at is None for seen in started.values()):
        started = {s: seen for s, seen in started.items() if seen.resolved_at is not None}
    return attrs.evolve(state, incident=None, firing=frozenset(), started=started)


def _closed(state: ServiceState, now: float, interval: float | None) -> ServiceState:
    """`closed(state)` by `healthy` or the last `Resolve`: a heartbeat monitor that had missed
    watches again from now (see "Heartbeats" below)."""
    return attrs.evolve(closed(state), heartbeat=_rearmed(state, now, interval))


def _due(
    state: ServiceState,
    incident: Incident,
    now: float,
    policy: Policy,
    windows: Quiet | None,
    resolve: Resolver | None,
    unreached: list[Unreached],
) -> Decision:
    """The incident's next step is due: notify it, unless a silence holds it (then look again
    when the quiet ends), or exhaust the incident if no step is left. A held step is held
    before it is resolved: who is on call is asked when the quiet ends, not when it began."""
    if incident.level < len(policy.levels):
        round, level = incident.round, incident.level + 1
    elif incident.round - incident.round_base <= policy.repeat:
        round, level = incident.round + 1, 1
    else:
        exhausted = attrs.evolve(incident, deadline=None, exhausted=True, silenced=False)
        return attrs.evolve(state, incident=exhausted), ()
    quiet = None
    if state.silences or windows is not None:  # a storm opens thousands: nothing to look at
        quiet = silenced_until(now, (spans(state.silences), windows))
    if quiet is not None:
        held = attrs.evolve(incident, deadline=quiet, silenced=True)
        return attrs.evolve(state, incident=held), ()
    return _page(state, incident, round, level, now, policy, resolve, unreached)


def _page(
    state: ServiceState,
    incident: Incident,
    round: int,
    level: int,
    now: float,
    policy: Policy,
    resolve: Resolver | None = None,
    unreached: list[Unreached] | None = None,
) -> Decision:
    """Notify every target of `level` and start its acknowledgement timeout.

    A level whose targets all resolve to nobody (a schedule with a gap now) is not a page that
    reaches no one while its timeout runs: it is recorded (`Unreached`) and the next step is
    notified at once, round after round as `repeat` allows; with no step left that reaches
    anybody, the incident is exhausted."""
    for _ in range(len(policy.levels) * (policy.repeat + 1)):
        step = policy.levels[level - 1]
        notes, reasons = _notes(state, incident, round, level, step, now, resolve)
        if reasons and unreached is not None:
            unreached.append(Unreached(round, level, reasons, skipped=not notes))
        if notes:
            paged = attrs.evolve(
                incident,
                round=round,
                level=level,
                deadline=now + step.ack_timeout,
                silenced=False,
            )
            return attrs.evolve(state, incident=paged), notes
        if level < len(policy.levels):
            level += 1
        elif round - incident.round_base <= policy.repeat:
            round, level = round + 1, 1
        else:
            break
    exhausted = attrs.evolve(
        incident, round=round, level=level, deadline=None, exhausted=True, silenced=False
    )
    return attrs.evolve(state, incident=exhausted), ()


def _notes(
    state: ServiceState,
    incident: Incident,
    round: int,
    level: int,
    step: Level,
    now: float,
    resolve: Resolver | None,
) -> tuple[tuple[Notify, ...], tuple[str, ...]]:
    """The notifications of one level, and why any of its targets reached nobody."""
    notes: dict[str, Notify] = {}
    reasons: list[str] = []
    for target in step.targets:
        if resolve is not None:
            resolution = resolve(target, now)
        elif target.is_reference:
            resolution = Resolution((), f"{target}: cannot be resolved here")
        else:
            resolution = Resolution((Contact(target),))
        if resolution.nobody is not None:
            reasons.append(resolution.nobody)
        for contact in resolution.contacts:
            note = Notify(
                service=state.name,
                incident=incident.number,
                round=round,
                level=level,
                target=contact.target,
                message=incident.message,
                opened_at=incident.opened_at,
                step=contact.step,
                via=contact.via,
                not_before=now + contact.delay if contact.delay > 0 else None,
            )
            notes.setdefault(note.id, note)  # one address twice in a level: notified once
    return tuple(notes.values()), tuple(reasons)


# Heartbeats ---------------------------------------------------------------------------------
#
# The rules, in one place (docs/guarantees.md says them to operators):
# - A monitor is armed by the service's first check-in, not by the config: a service that never
#   checked in is not known to be alive, and paging for it at start would page every service
#   added with `heartbeat` before its sender is set up (GoAlert, Healthchecks.io and Dead Man's
#   Snitch do the same).
# - A check-in moves the deadline to now + the configured interval (a changed interval applies
#   from the next check-in). Past the deadline, the miss is an alert "no heartbeat for 5m": on a
#   healthy service it opens an incident, marked `heartbeat_only`, that pages level 1 and
#   escalates as usual; on an unhealthy one it counts on the open incident. Then the monitor
#   waits (`due_at` None): one silence pages once, however long it lasts.
# - The next check-in re-arms it and closes the incident only if it is `heartbeat_only`: an
#   incident an ordinary alert opened, or that an alert came to while open, stays open until
#   `healthy` (or, for an integration's alerts only, until their last `Resolve`). An ack
#   changes nothing here: it stops the escalation, the check-in still closes.
# - A missed heartbeat holds the incident as a plain alert does: the last `Resolve` of an
#   integration's alerts does not close an incident whose monitor is still missed; it leaves it
#   `heartbeat_only`, for the check-in (or `healthy`) to close. A service whose config no longer
#   has `heartbeat` has no miss holding anything (its check-ins are refused).
# - `healthy` closes whatever is open, as always; a monitor that had missed is re-armed at now
#   + interval, so a sender still silent is paged for again one interval later, never forgotten.
# - A service whose config no longer has `heartbeat` is disarmed when its deadline comes (the
#   engine hands it over at once after a reload), without paging; its check-ins are refused.


def _check_in(state: ServiceState, now: float, interval: float | None) -> Decision:
    if interval is None:
        raise Rejected(
            "bad_request", f"{state.name} has no heartbeat configured (services.{state.name})"
        )
    if state.incident is not None and state.incident.heartbeat_only:
        state = closed(state)  # nothing fires for an incident only a miss opened
    monitor = Monitor(interval, now + interval, now)
    return attrs.evolve(state, heartbeat=monitor), ()


def _missed(
    state: ServiceState,
    due_at: float,
    now: float,
    policy: Policy,
    interval: float | None,
    windows: Quiet | None,
    resolve: Resolver | None,
    unreached: list[Unreached],
) -> Decision:
    monitor = state.heartbeat
    if monitor is None or monitor.due_at != due_at:
        return state, ()  # stale: a check-in moved the deadline since, or it was disarmed
    if interval is None:
        return attrs.evolve(state, heartbeat=None), ()  # no longer configured: disarmed, silently
    if now < due_at:
        return state, ()
    missed = attrs.evolve(monitor, due_at=None)
    message = missed_message(monitor.interval)
    incident = state.incident
    if incident is not None:
        return attrs.evolve(state, incident=incident.counted(), heartbeat=missed), ()
    number = state.last_incident + 1
    opened = Incident(number=number, opened_at=now, message=message, level=0, heartbeat_only=True)
    missing = attrs.evolve(state, last_incident=number, heartbeat=missed)
    return _due(missing, opened, now, policy, windows, resolve, unreached)


def missed_message(interval: float) -> str:
    """The alert a missed heartbeat raises: `no heartbeat for 5m`."""
    return f"no heartbeat for {duration(interval)}"


def _rearmed(state: ServiceState, now: float, interval: float | None) -> Monitor | None:
    """The monitor after `healthy`: one that had missed watches again from now."""
    monitor = state.heartbeat
    if monitor is None or not monitor.missed:
        return monitor
    if interval is None:
        return None
    return attrs.evolve(monitor, interval=interval, due_at=now + interval)


# Late firings -------------------------------------------------------------------------------
#
# An integration's alert can be delivered firing after pagerd took its resolve: a cluster of
# Alertmanagers notifies at least once, and a peer that has not seen the resolve yet sends the
# firing it still holds; a sender retries an old request late. But the alert can also truly
# fire again after its resolve with the same `startsAt`: when Alertmanager stops hearing from
# Prometheus (a network blip, a restart) for longer than the alert's `endsAt`, it resolves the
# alert itself, and when Prometheus comes back with the alert still firing, Alertmanager
# notifies it firing again with its old `startsAt`. pagerd's first promise is that every alert
# pages, so only a firing *proven* stale is ignored: one page too many, never one too few.
# The sender's `startsAt` is the proof: it is when the alert started, the same in every copy of
# one firing, the same or later for a firing after a resolve (Prometheus sends the time it
# fired; Alertmanager merges a firing that starts before the previous one's end into it,
# keeping the earlier start), never earlier. So:
# - An alert's `startsAt`, when the sender gives one, is kept while it fires (the latest, if a
#   copy says a later one: the firing pagerd holds ended at the sender and this one followed)
#   and when it resolves (the resolve's, or the firing's if the resolve gives none), with the
#   time pagerd took the resolve. A resolve of an alert that is not firing is kept too (the
#   latest): every firing that started before it is over.
# - A firing of an alert not firing whose `startsAt` is *before* the one kept for its resolve
#   is stale: a copy of a firing that ended before the resolved one started. It changes
#   nothing and pages nobody (the daemon counts it and logs it). One with the *same*
#   `startsAt` is not proven stale (a peer's late copy, or the alert back after its sender was
#   away look the same): it opens an incident and pages, as any firing after its resolve.
# - A resolve of an alert firing whose `startsAt` is before the one kept for the firing is
#   stale too: it resolves a firing that ended before the one pagerd holds started. It changes
#   nothing (the daemon logs it): the incident stays open, and escalates, until the firing
#   that holds it resolves. A resolve with the same `startsAt`, a later one or none closes.
# - `startsAt` is compared only with another `startsAt` of the same alert, never with pagerd's
#   clock: a sender whose clock is off cannot silence an alert by it. No `startsAt`, or one that
#   cannot be read, proves nothing: the firing is taken as new, the resolve as the firing's.
# - Bounded: a resolve counts for `RESOLVED_FOR` (pagerd's clock against pagerd's clock), and
#   at most `MAX_RESOLVED` are kept a service and integration (the oldest goes first).
#   Forgotten, a late copy pages, as it did before: never one page too few for what pagerd
#   cannot prove.
# - `Healthy` forgets what fires, and so its `startsAt`: an alert still firing pages again at
#   its next resend, as before; what resolved stays remembered.


def stale(state: ServiceState, source: Source, starts_at: int | None, now: float) -> bool:
    """Is a firing of `source` that started at `starts_at` a copy of a firing that ended before
    the one `source` last resolved with started? (The same `startsAt` is not: see above.)"""
    if starts_at is None or source in state.firing:
        return False
    seen = state.started.get(source)
    return (
        seen is not None
        and seen.resolved_at is not None
        and now - seen.resolved_at <= RESOLVED_FOR
        and starts_at < seen.starts_at
    )


def stale_resolve(state: ServiceState, source: Source, starts_at: int | None) -> bool:
    """Is a resolve of `source`, which fires, one of a firing that started (at `starts_at`)
    before the one pagerd holds?"""
    if starts_at is None or source not in state.firing:
        return False
    seen = state.started.get(source)
    return seen is not None and seen.resolved_at is None and starts_at < seen.starts_at


def _started(starts_at: int | None) -> Started | None:
    return None if starts_at is None else Started(starts_at)


def _put(
    started: Mapping[Source, Started], source: Source, seen: Started | None
) -> Mapping[Source, Started]:
    """`started` with `source` set to `seen`, or left out if `seen` is None."""
    changed = dict(started)
    if seen is None:
        changed.pop(source, None)
    else:
        changed[source] = seen
    return changed


def _started_later(state: ServiceState, source: Source, starts_at: int | None) -> ServiceState:
    """A firing of `source`, which fires already: only a later `startsAt` is kept."""
    seen = state.started.get(source)
    if starts_at is None or (seen is not None and seen.starts_at >= starts_at):
        return state
    return attrs.evolve(state, started=_put(state.started, source, Started(starts_at)))


def _resolved(
    started: Mapping[Source, Started], source: Source, starts_at: int | None, now: float
) -> Mapping[Source, Started]:
    """`started` once `source` resolved at `now`: the latest `startsAt` known of it kept with
    `now` (of a firing, the resolve's, since one that started earlier changes nothing: see
    `stale_resolve`; the firing's if the resolve gives none). Past `MAX_RESOLVED` entries,
    what is past `RESOLVED_FOR` is dropped, then the integration's oldest resolves past
    `MAX_RESOLVED` (below that, one past `RESOLVED_FOR` is kept but counts for nothing: see
    `stale`; a resolve storm need not walk the map each time)."""
    seen = started.get(source)
    known = [t for t in (starts_at, None if seen is None else seen.starts_at) if t is not None]
    if not known:
        return started
    kept = dict(started)
    kept[source] = Started(max(known), now)
    if len(kept) <= MAX_RESOLVED:
        return kept
    kept = {
        s: v
        for s, v in kept.items()
        if v.resolved_at is None or now - v.resolved_at <= RESOLVED_FOR
    }
    others = [
        (v.resolved_at, s)
        for s, v in kept.items()
        if s.integration == source.integration and v.resolved_at is not None and s != source
    ]
    if len(others) >= MAX_RESOLVED:
        others.sort(key=lambda pair: pair[0])  # stable: of equal times, the first kept goes
        for _, s in others[: len(others) + 1 - MAX_RESOLVED]:
            del kept[s]
    return kept


def _resolved_again(
    state: ServiceState, source: Source, starts_at: int | None, now: float
) -> ServiceState:
    """A resolve of `source`, which does not fire (resolved already, or never seen firing):
    its `startsAt` is kept, unless a later or equal one is kept already."""
    if starts_at is None:
        return state
    seen = state.started.get(source)
    if (
        seen is not None
        and seen.resolved_at is not None
        and now - seen.resolved_at <= RESOLVED_FOR
        and seen.starts_at >= starts_at
    ):
        return state
    return attrs.evolve(state, started=_resolved(state.started, source, starts_at, now))


# Silences -----------------------------------------------------------------------------------
#
# The rules, in one place (docs/silences.md says them to operators):
# - A silence holds pages back; it drops nothing. An alert during a silence is counted on the
#   service as ever (an incident opens, alerts count, history is complete), but the incident
#   pages nobody: it is held before its first step (level 0), its deadline the quiet's end.
# - Any step that comes due while the service is silenced (an escalation of an incident that
#   was paging when the silence started) is held the same way: pages already sent stay sent,
#   nothing more is sent. When the quiet ends, the held step is notified then, and its own
#   ack timeout starts then: an incident opened during the silence pages level 1 at its end,
#   as if the alert had just come.
# - The quiet at a moment is the union of every silence in force then and of `windows`, the
#   config's recurring ones (`pager.silences.silenced_until`); a held incident whose quiet is
#   extended meanwhile is held on, to the new end, when its deadline comes.
# - Starting or ending a silence looks again at a held incident at once: ending it early
#   pages the held step now, as the natural end would; a silence that extends the quiet moves
#   the deadline. An incident that is paging and not yet due is left alone until it is due.
# - `healthy`, the last resolve, a check-in that ends a miss: the held incident closes quietly.
#   An ack ends the hold with the escalation; exhausting needs no page, so it is not held.


def _silence(
    state: ServiceState,
    silence: Silence,
    now: float,
    policy: Policy,
    windows: Quiet | None,
    resolve: Resolver | None,
    unreached: list[Unreached],
) -> Decision:
    if silence.until <= now:
        raise Rejected("bad_request", f"a silence of {state.name} must end after now")
    if silence.ends_at <= silence.starts_at:
        raise Rejected("bad_request", f"a silence of {state.name} must end after it starts")
    if any(s.id == silence.id for s in state.silences):
        raise Rejected("bad_request", f"{state.name} has a silence {silence.id} already")
    kept = live(state.silences, now)
    if len(kept) >= MAX_SILENCES:
        raise Rejected(
            "too_many_silences",
            f"{state.name} has {len(kept)} silences in force or to come, the most pagerd keeps:"
            " end some first",
        )
    silenced = attrs.evolve(state, silences=(*kept, silence))
    return _reconsidered(silenced, now, policy, windows, resolve, unreached)


def _end_silence(
    state: ServiceState,
    number: int,
    by: str | None,
    now: float,
    policy: Policy,
    windows: Quiet | None,
    resolve: Resolver | None,
    unreached: list[Unreached],
) -> Decision:
    found = next((s for s in state.silences if s.id == number), None)
    if found is None:
        raise Rejected("not_found", f"{state.name} has no silence {number}")
    if found.over(now):
        return state, ()  # over already: ending it again changes nothing
    ended = attrs.evolve(found, ended_at=now, ended_by=by)
    silences = tuple(ended if s.id == number else s for s in state.silences)
    return _reconsidered(
        attrs.evolve(state, silences=silences), now, policy, windows, resolve, unreached
    )


def _reconsidered(
    state: ServiceState,
    now: float,
    policy: Policy,
    windows: Quiet | None,
    resolve: Resolver | None,
    unreached: list[Unreached],
) -> Decision:
    """`state` with its held step looked at again now that its silences changed."""
    incident = state.incident
    if incident is None or not incident.silenced or incident.deadline is None:
        return state, ()
    return _due(state, incident, now, policy, windows, resolve, unreached)
