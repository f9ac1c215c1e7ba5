"""`[people.*]`, `[schedules.*]` and `services.*.maintenance`: read by hand, every problem reported
with its key path, each IANA zone name resolved to a `zoneinfo.ZoneInfo` here (the core takes
`tzinfo` objects and opens no file).

```toml
[people.alice]
email = "alice@example.com"
sms = "+447700900123"
notify = ["sms", "email after 2m", "sms after 5m"]

[schedules.payments-primary]
timezone = "Europe/London"
gaps = "unexpected"   # the default; "expected": its gaps are meant (business hours)

[[schedules.payments-primary.layers]]
people = ["alice", "bob", "carol"]
shift = "1w"
start = 2024-01-01
handoff = "09:00"
restrict = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", until = "17:00" }]
```
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable
from typing import Any, Final

from pager.domain import CHANNELS, Target, is_service_name
from pager.people import MAX_RULE_STEPS, Person, Step, parse_step
from pager.schedules import Layer, Rotation, Schedule, parse_shift
from pager.weekly import Weekly, Window, parse_clock
from pagerd.config.channels import target_problem
from pagerd.config.durations import Invalid, parse_duration

Join = Callable[[str, object], str]

RESERVED_SCHEDULE_NAMES: Final = frozenset({"list", "remove"})
"""Words of `pager override list|remove`: no schedule may be named so."""
MAX_LAYERS: Final = 10
MAX_PEOPLE_IN_ROTATION: Final = 500
MAX_WINDOWS: Final = 50
MAX_SCHEDULE_WINDOWS: Final = 100
"""Restriction windows in all the layers of one schedule: each one's edges are changes of who
is on call, which every look ahead (the calendar feed, `pager oncall`, an override's check,
the gaps) walks through. With `MAX_LAYERS` layers of one-hour shifts, a week has at most
10 x 168 hand-offs and 100 x 7 x 2 edges: a year of it stays within what one question may
cost (`pagerd.engine.compute.WORK`)."""
MAX_MAINTENANCE_WINDOWS: Final = 5000
"""`[[services.X.maintenance]]` windows of all services together: a `pager status` reads every
service's windows (worked out a day at a time, kept while they hold), so their number bounds
what it costs."""
MAX_GAP_WEEKS: Final = 52


def toml_type(value: Any) -> str:
    """What TOML calls the type of `value` ("a string", "a table"), for an error."""
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)  # fmt: skip


NOT_CIVIL: Final = frozenset({"localtime", "posixrules", "Factory"})
"""Names zoneinfo may find that are no place's civil time: this machine's zone, whatever it is
(`localtime`), a file of rules for POSIX TZ strings (`posixrules`), and `Factory`, the zone
of a machine not set up ("-00"). The `right/` and `posix/` trees are refused too: `right/`
counts leap seconds, which zoneinfo does not (read as a plain zone, `right/Europe/London`
puts a 09:00 hand-off an hour off); `posix/` copies the others under a second name."""


@functools.cache
def _civil_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_CIVIL


def civil_zone_problem(name: str) -> str | None:
    """Why `name` is not the IANA name of a civil time zone, None if it is one: a name of the
    IANA database (`zoneinfo.available_timezones()`, tzdata's list and the system's), never
    one of `NOT_CIVIL` nor under `right/` or `posix/`."""
    if name.startswith(("right/", "posix/")) or name in NOT_CIVIL:
        return (
            f"{name!r} is not a civil time zone (use a plain IANA name, like Europe/London:"
            " not localtime, posixrules, Factory, right/... or posix/...)"
        )
    if name not in _civil_zones():
        return f"no time zone named {name!r} (an IANA name, like Europe/London)"
    return None


def zone(name: Any, at: str, errors: list[str]) -> zoneinfo.ZoneInfo | None:
    """The IANA zone `name` (like "Europe/London"), or None and an error at `at`."""
    if type(name) is not str:
        errors.append(
            f'{at}: expected an IANA time zone name like "Europe/London", got {toml_type(name)}'
        )
        return None
    problem = civil_zone_problem(name)
    if problem is not None:
        errors.append(f"{at}: {problem}")
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        errors.append(f"{at}: no time zone named {name!r} (an IANA name, like Europe/London)")
        return None


def _unknown(table: dict[str, Any], keys: set[str], at: str, join: Join) -> list[str]:
    return [f"{join(at, key)}: unknown key" for key in sorted(table.keys() - keys)]


def build_people(
    value: Any, configured: set[str], join: Join
) -> tuple[dict[str, Person], set[str], list[str]]:
    """`[people.*]`: the people, the names given (those with errors too: a reference to one is
    not also an error), and every problem."""
    if not isinstance(value, dict):
        return {}, set(), [f"people: expected a table, got {toml_type(value)}"]
    people: dict[str, Person] = {}
    errors: list[str] = []
    for name, table in value.items():
        at = join("people", name)
        if not is_service_name(name):
            errors.append(f"{at}: a person's name is 1 to 128 letters, digits, '.', '_' or '-'")
        if not isinstance(table, dict):
            errors.append(f"{at}: expected a table, got {toml_type(table)}")
            continue
        found: list[str] = _unknown(table, {*CHANNELS, "notify"}, at, join)
        contacts: list[Target] = []
        for method in CHANNELS:
            if method not in table:
                continue
            address = table[method]
            where = join(at, method)
            if type(address) is not str:
                found.append(f"{where}: expected a string, got {toml_type(address)}")
                continue
            try:
                target = Target.parse(f"{method}:{address}")
            except ValueError as exc:
                found.append(f"{where}: {exc}")
                continue
            if method not in configured:
                found.append(
                    f"{where}: channel {method!r} is not configured (add a [channels.{method}] "
                    "section)"
                )
            elif (problem := target_problem(target)) is not None:
                found.append(f"{where}: {problem}")
            contacts.append(target)
        if not contacts and not any(m in table for m in CHANNELS):
            found.append(f"{at}: a person needs at least one of {', '.join(CHANNELS)}")
        rule = _rule(table.get("notify"), join(at, "notify"), {t.channel for t in contacts},
                     {m for m in CHANNELS if m in table}, found)  # fmt: skip
        errors += found
        if not found:
            people[name] = Person(name, tuple(contacts), rule)
    return people, set(value), errors


def _rule(
    value: Any, at: str, have: set[str], given: set[str], errors: list[str]
) -> tuple[Step, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(
            f'{at}: expected an array like ["sms", "email after 2m"], got {toml_type(value)}'
        )
        return ()
    if not value:
        errors.append(f"{at}: an empty rule notifies nobody (leave it out to use every method)")
    if len(value) > MAX_RULE_STEPS:
        errors.append(f"{at}: at most {MAX_RULE_STEPS} steps")
    steps: list[Step] = []
    for i, text in enumerate(value):
        where = f"{at}[{i}]"
        if type(text) is not str:
            errors.append(f"{where}: expected a string, got {toml_type(text)}")
            continue
        try:
            method, delay = parse_step(text)
            after = 0.0 if delay is None else parse_duration(delay)
        except (ValueError, Invalid) as exc:
            errors.append(f"{where}: {exc}")
            continue
        if method not in given:
            errors.append(f"{where}: this person has no {method} address")
        elif method in have:
            steps.append(Step(method, after))
    return tuple(steps)


def build_schedules(
    value: Any, people: set[str], join: Join
) -> tuple[dict[str, Schedule], set[str], list[str]]:
    """`[schedules.*]`: the schedules, the names given, and every problem. `people` are the
    names `[people]` gives: a rotation of somebody not there pages nobody."""
    if not isinstance(value, dict):
        return {}, set(), [f"schedules: expected a table, got {toml_type(value)}"]
    schedules: dict[str, Schedule] = {}
    errors: list[str] = []
    for name, table in value.items():
        at = join("schedules", name)
        found: list[str] = []
        if not is_service_name(name) or name in RESERVED_SCHEDULE_NAMES:
            found.append(
                f"{at}: a schedule's name is 1 to 128 letters, digits, '.', '_' or '-' (and not "
                f"{' or '.join(sorted(RESERVED_SCHEDULE_NAMES))})"
            )
        if not isinstance(table, dict):
            errors.append(f"{at}: expected a table, got {toml_type(table)}")
            continue
        found += _unknown(table, {"timezone", "layers", "gaps"}, at, join)
        expected = _gaps(table.get("gaps", "unexpected"), join(at, "gaps"), found)
        tz = None
        if "timezone" not in table:
            found.append(f"{at}.timezone: required key missing")
        else:
            tz = zone(table["timezone"], f"{at}.timezone", found)
        layers = table.get("layers")
        built: list[Layer] = []
        if not isinstance(layers, list) or not layers:
            found.append(f"{at}.layers: expected one or more [[{at}.layers]] tables")
        elif len(layers) > MAX_LAYERS:
            found.append(f"{at}.layers: at most {MAX_LAYERS} layers")
        else:
            for i, layer in enumerate(layers):
                one = _layer(layer, f"{at}.layers[{i}]", tz, people, join, found)
                if one is not None:
                    built.append(one)
            windows = sum(len(layer.restrict.windows) for layer in built if layer.restrict)
            if windows > MAX_SCHEDULE_WINDOWS:
                found.append(
                    f"{at}.layers: {windows} restriction windows in all, at most "
                    f"{MAX_SCHEDULE_WINDOWS} (every change of who is on call is looked at by "
                    "the calendar feed, pager oncall and the gap check: join windows, or split "
                    "the schedule)"
                )
        errors += found
        if not found and tz is not None:
            schedules[name] = Schedule(name, tz, tuple(built), expected)
    return schedules, set(value), errors


def _gaps(value: Any, at: str, errors: list[str]) -> bool:
    """`gaps = "expected"` (its gaps are meant: business hours, one region of a follow-the-sun)
    or `"unexpected"` (the default: each gap is reported, and fails `pagerd --check`)."""
    if value in ("expected", "unexpected"):
        return bool(value == "expected")
    errors.append(
        f'{at}: expected "expected" (its gaps are meant, not reported on their own) or'
        f' "unexpected" (the default), got {value!r}'
    )
    return False


def _layer(
    table: Any,
    at: str,
    tz: dt.tzinfo | None,
    people: set[str],
    join: Join,
    errors: list[str],
) -> Layer | None:
    if not isinstance(table, dict):
        errors.append(f"{at}: expected a table, got {toml_type(table)}")
        return None
    before = len(errors)
    errors += _unknown(table, {"name", "people", "shift", "start", "handoff", "restrict"}, at, join)
    label = table.get("name", "")
    if type(label) is not str:
        errors.append(f"{at}.name: expected a string, got {toml_type(label)}")
    rota = table.get("people")
    if not isinstance(rota, list) or not rota:
        errors.append(f'{at}.people: expected an array of names, like ["alice", "bob"]')
        rota = []
    elif len(rota) > MAX_PEOPLE_IN_ROTATION:
        errors.append(f"{at}.people: at most {MAX_PEOPLE_IN_ROTATION} people")
    for i, person in enumerate(rota):
        if type(person) is not str:
            errors.append(f"{at}.people[{i}]: expected a string, got {toml_type(person)}")
        elif person not in people:
            errors.append(f"{at}.people[{i}]: no person named {person!r} (add [people.{person}])")
    shift = table.get("shift")
    every, unit = 1, "weeks"
    if shift is None:
        errors.append(f'{at}.shift: required key missing (like "1w", "1d" or "12h")')
    elif type(shift) is not str:
        errors.append(f"{at}.shift: expected a string, got {toml_type(shift)}")
    else:
        try:
            every, unit = parse_shift(shift)
        except ValueError as exc:
            errors.append(f"{at}.shift: {exc}")
    start = _date(table.get("start"), f"{at}.start", errors)
    handoff = table.get("handoff", "00:00")
    minutes = 0
    if type(handoff) is not str:
        errors.append(f"{at}.handoff: expected a string, got {toml_type(handoff)}")
    else:
        try:
            minutes = parse_clock(handoff)
        except ValueError as exc:
            errors.append(f"{at}.handoff: {exc}")
    restrict = None
    if "restrict" in table and tz is not None:
        windows = windows_of(table["restrict"], f"{at}.restrict", join, errors, zone_key=False)
        if windows:
            restrict = Weekly(windows, tz)
    if len(errors) > before or start is None or tz is None:
        return None
    begin = dt.datetime.combine(start, dt.time()) + dt.timedelta(minutes=minutes)
    return Layer(Rotation(tuple(rota), begin, every, unit), restrict, label)  # type: ignore[arg-type]


def _date(value: Any, at: str, errors: list[str]) -> dt.date | None:
    if value is None:
        errors.append(f"{at}: required key missing (a date, like 2024-01-01)")
        return None
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date | str):
        errors.append(f"{at}: expected a date like 2024-01-01 (the time is `handoff`)")
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            errors.append(f"{at}: expected a date like 2024-01-01, got {value!r}")
            return None
    if not 1900 <= value.year <= 9000:
        errors.append(f"{at}: a year from 1900 to 9000")
        return None
    return value


def windows_of(
    value: Any, at: str, join: Join, errors: list[str], *, zone_key: bool
) -> tuple[Window, ...]:
    """An array of `{days, from, until}` tables (with a `timezone` each if `zone_key`)."""
    if not isinstance(value, list) or not value:
        errors.append(
            f'{at}: expected an array of {{ days = [...], from = "09:00", until = "17:00" }}'
        )
        return ()
    if len(value) > MAX_WINDOWS:
        errors.append(f"{at}: at most {MAX_WINDOWS} windows")
        return ()
    found: list[Window] = []
    for i, table in enumerate(value):
        where = f"{at}[{i}]"
        if not isinstance(table, dict):
            errors.append(f"{where}: expected a table, got {toml_type(table)}")
            continue
        keys = {"days", "from", "until"} | ({"timezone"} if zone_key else set())
        bad = _unknown(table, keys, where, join)
        missing = [
            f"{join(where, k)}: required key missing" for k in sorted(keys) if k not in table
        ]
        if bad or missing:
            errors += bad + missing
            continue
        days, start, until = table["days"], table["from"], table["until"]
        if not isinstance(days, list) or any(type(d) is not str for d in days):
            errors.append(f'{where}.days: expected an array of days, like ["mon", "tue"]')
            continue
        if type(start) is not str or type(until) is not str:
            errors.append(f'{where}: "from" and "until" are times of day, like "09:00"')
            continue
        try:
            found.append(Window.of(days, start, until))
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
    return tuple(found)


def build_maintenance(value: Any, at: str, join: Join, errors: list[str]) -> tuple[Weekly, ...]:
    """`services.X.maintenance`: `[[services.X.maintenance]]` tables of days, from, until and
    timezone; one `Weekly` each (each its own zone)."""
    windows = windows_of(value, at, join, errors, zone_key=True)
    if len(windows) != len(value):
        return ()
    found: list[Weekly] = []
    for i, (window, table) in enumerate(zip(windows, value, strict=True)):
        tz = zone(table["timezone"], f"{at}[{i}].timezone", errors)
        if tz is not None:
            found.append(Weekly((window,), tz))
    return tuple(found) if len(found) == len(windows) else ()
