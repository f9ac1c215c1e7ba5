"""People, their contact methods and notification rules, and how a policy's target is resolved
to the addresses to notify.

A policy level's target is an address (`email:alice@example.com`, as always), a person
(`person:alice`) or a schedule (`schedule:payments-primary`). `Directory.resolve` turns one into
`Contact`s at an instant: an address is itself; a person is their notification rule (each step a
contact method and a delay: "sms at once, email after 2m, sms again after 5m"); a schedule is
whoever is on call then (overrides applied), then that person's rule. A schedule with nobody on
call resolves to no contact, with the reason. Pure: the directory is a snapshot the daemon
builds from its config and its stored overrides; it reads no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import attrs

from pager.domain import CHANNELS, Contact, Resolution, Target
from pager.schedules import Override, Schedule, on_call

MAX_RULE_STEPS: Final = 10
_STEP_RE: Final = re.compile(r"\s*([a-z]+)(?:\s+again)?(?:\s+after\s+(\S+))?\s*")


@attrs.frozen
class Step:
    """One step of a notification rule: notify by `method` `after` seconds from when the
    escalation level was notified."""

    method: str
    after: float = 0.0


@attrs.frozen
class Person:
    """Somebody who can be paged: one address per contact method, and the rule saying which
    to use when (by default, every method they have, at once, in the order of `CHANNELS`)."""

    name: str
    contacts: tuple[Target, ...]
    rule: tuple[Step, ...] = ()

    def address(self, method: str) -> Target | None:
        for target in self.contacts:
            if target.channel == method:
                return target
        return None

    @property
    def steps(self) -> tuple[Step, ...]:
        if self.rule:
            return self.rule
        return tuple(Step(t.channel) for t in self.contacts)

    def contacts_for(self, via: str) -> tuple[Contact, ...]:
        """The person's rule as contacts; `via` says how they were reached, for the history."""
        found: list[Contact] = []
        seen: dict[Target, int] = {}
        for step in self.steps:
            target = self.address(step.method)
            if target is None:  # the config refuses a rule naming a method the person lacks
                continue
            seen[target] = seen.get(target, 0) + 1
            found.append(Contact(target, step.after, seen[target], via))
        return tuple(found)


def parse_step(text: str) -> tuple[str, str | None]:
    """`"email after 2m"` -> ("email", "2m"); `"sms"` -> ("sms", None); `"sms again after 5m"`
    -> ("sms", "5m"). The grammar: METHOD [again] [after DURATION], words separated by spaces;
    `again` is for the reader only (a method may come back with or without it). A `ValueError`
    says what is wrong (the delay itself is parsed by the caller)."""
    match = _STEP_RE.fullmatch(text)
    if match is None or match.group(1) not in CHANNELS:
        raise ValueError(
            f"expected a contact method ({', '.join(CHANNELS)}), optionally followed by "
            f'"again" and by "after" and a delay, like "email after 2m" or "sms again after '
            f'5m"; got {text!r}'
        )
    return match.group(1), match.group(2)


@attrs.frozen(eq=False)
class Directory:
    """Everyone and every schedule, with the overrides in force: what `resolve` needs."""

    people: Mapping[str, Person] = attrs.Factory(dict)
    schedules: Mapping[str, Schedule] = attrs.Factory(dict)
    overrides: Mapping[str, tuple[Override, ...]] = attrs.Factory(dict)

    def with_overrides(self, overrides: Mapping[str, tuple[Override, ...]]) -> Directory:
        return attrs.evolve(self, overrides=overrides)

    def on_call(self, schedule: str, at: float) -> str | None:
        return on_call(self.schedules[schedule], at, self.overrides.get(schedule, ()))

    def resolve(self, target: Target, at: float) -> Resolution:
        """What `target` means at instant `at` (seconds since the epoch, on the wall clock)."""
        if target.channel == "person":
            person = self.people.get(target.address)
            if person is None:
                return Resolution((), f"{target}: no such person")
            return Resolution(person.contacts_for(str(target)))
        if target.channel == "schedule":
            if target.address not in self.schedules:
                return Resolution((), f"{target}: no such schedule")
            who = self.on_call(target.address, at)
            if who is None:
                return Resolution((), f"{target} has nobody on call")
            person = self.people.get(who)
            if person is None:
                return Resolution((), f"{target} → {who}, who is not in [people]")
            return Resolution(person.contacts_for(f"{target} → {who}"))
        return Resolution((Contact(target),))
