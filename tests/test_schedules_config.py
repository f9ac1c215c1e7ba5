"""`[people]`, `[schedules]`, `services.X.maintenance` and `daemon.gap_weeks` in the config, and
the gaps `pagerd --check` reports: every mistake named by its key path, nothing else changed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pager.domain import Target
from pager.people import Step
from pagerd import main as pagerd_main
from pagerd.config import load
from pagerd.config.people import civil_zone_problem
from tests.harness import CHANNELS, errors_of

PEOPLE = """
[people.alice]
email = "alice@example.com"
sms = "+14155550100"
notify = ["sms", "email after 2m", "sms again after 5m"]

[people.bob]
email = "bob@example.com"

[schedules.primary]
timezone = "Europe/London"
[[schedules.primary.layers]]
people = ["alice", "bob"]
shift = "1w"
start = 2024-01-01
handoff = "09:00"
"""

POLICY = """
[policies.rota]
[[policies.rota.levels]]
targets = ["schedule:primary"]
[[policies.rota.levels]]
targets = ["person:bob", "email:lead@example.com"]

[services.api]
policy = "rota"
"""


def test_people_schedules_and_references_load(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(
        CHANNELS
        + PEOPLE
        + POLICY
        + """
[[services.api.maintenance]]
days = ["sun"]
from = "02:00"
until = "04:00"
timezone = "America/New_York"
"""
    )
    config = load(path)
    alice = config.people["alice"]
    assert alice.contacts == (Target("email", "alice@example.com"), Target("sms", "+14155550100"))
    assert alice.rule == (Step("sms"), Step("email", 120.0), Step("sms", 300.0))
    schedule = config.schedules["primary"]
    assert str(schedule.zone) == "Europe/London"
    assert schedule.layers[0].rotation.start == dt.datetime(2024, 1, 1, 9, 0)
    assert config.policies["rota"].levels[0].targets == (Target("schedule", "primary"),)
    (window,) = config.maintenance["api"]
    assert str(window.zone) == "America/New_York"
    assert config.gap_weeks == 4


def test_plain_targets_are_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(
        CHANNELS
        + '[policies.p]\n[[policies.p.levels]]\ntargets = ["email:a@example.com"]\n'
        + '[services.api]\npolicy = "p"\n'
    )
    config = load(path)
    assert config.people == {} and config.schedules == {}


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('[people.carol]\nemail = "not an address"\n', "people.carol.email: not an email address"),
        ('[people.carol]\nslack = "https://hooks.example.com/x"\n',
         "people.carol.slack: channel 'slack' is not configured"),
        ("[people.carol]\n", "people.carol: a person needs at least one of"),
        ('[people.carol]\nemail = "c@example.com"\nnotify = ["sms"]\n',
         "people.carol.notify[0]: this person has no sms address"),
        ('[people.carol]\nemail = "c@example.com"\nnotify = ["email after soon"]\n',
         "people.carol.notify[0]:"),
        ('[people.carol]\nemail = "c@example.com"\npager = "x"\n',
         "people.carol.pager: unknown key"),
        ('[schedules.s]\ntimezone = "Mars/Olympus"\n[[schedules.s.layers]]\npeople = ["bob"]\n'
         'shift = "1w"\nstart = 2024-01-01\n', "schedules.s.timezone: no time zone named"),
        ('[schedules.s]\ntimezone = "UTC"\n[[schedules.s.layers]]\npeople = ["zed"]\n'
         'shift = "1w"\nstart = 2024-01-01\n',
         "schedules.s.layers[0].people[0]: no person named 'zed'"),
        ('[schedules.s]\ntimezone = "UTC"\n[[schedules.s.layers]]\npeople = ["bob"]\n'
         'shift = "1 month"\nstart = 2024-01-01\n', "schedules.s.layers[0].shift:"),
        ('[schedules.s]\ntimezone = "UTC"\n[[schedules.s.layers]]\npeople = ["bob"]\n'
         'shift = "1w"\nstart = 2024-01-01\nhandoff = "9am"\n', "schedules.s.layers[0].handoff:"),
        ('[schedules.s]\ntimezone = "UTC"\n[[schedules.s.layers]]\npeople = ["bob"]\n'
         'shift = "1w"\nstart = 2024-01-01\nrestrict = [{ days = ["funday"], from = "09:00",'
         ' until = "17:00" }]\n', "schedules.s.layers[0].restrict[0]: 'funday' is not a day"),
        ('[schedules.s]\ntimezone = "UTC"\n[[schedules.s.layers]]\npeople = ["bob"]\n'
         'shift = "1w"\n', "schedules.s.layers[0].start: required key missing"),
        ('[schedules.list]\ntimezone = "UTC"\n[[schedules.list.layers]]\npeople = ["bob"]\n'
         'shift = "1w"\nstart = 2024-01-01\n', "schedules.list: a schedule's name"),
        ('[schedules.s]\ntimezone = "UTC"\n', "schedules.s.layers: expected one or more"),
        ('[policies.q]\n[[policies.q.levels]]\ntargets = ["schedule:nope"]\n',
         "policies.q.levels[0].targets[0]: no schedule named 'nope'"),
        ('[policies.q]\n[[policies.q.levels]]\ntargets = ["person:nope"]\n',
         "policies.q.levels[0].targets[0]: no person named 'nope'"),
        ('[[services.web.maintenance]]\ndays = ["sun"]\nfrom = "02:00"\nuntil = "04:00"\n'
         '[services.web]\npolicy = "rota"\n', "services.web.maintenance[0].timezone: required key"),
        ('[[services.web.maintenance]]\ndays = ["sun"]\nfrom = "25:00"\nuntil = "04:00"\n'
         'timezone = "UTC"\n[services.web]\npolicy = "rota"\n',
         "services.web.maintenance[0]: '25:00' is not a time of day"),
        ("[daemon]\ngap_weeks = 99\n", "daemon.gap_weeks: must be 0"),
    ],
)  # fmt: skip
def test_mistakes_are_named_by_their_key_path(tmp_path: Path, extra: str, error: str) -> None:
    text = (
        CHANNELS.replace("[daemon]\n", "[daemon]\ngap_weeks = 99\n")
        if "gap_weeks" in extra
        else CHANNELS
    )
    if "gap_weeks" in extra:
        extra = ""
    errors = errors_of(tmp_path, text + PEOPLE + POLICY + extra)
    assert any(e.startswith(error) or error in e for e in errors), errors


@pytest.mark.parametrize(
    "name", ["localtime", "posixrules", "Factory", "right/Europe/London", "posix/Europe/London"]
)
def test_a_zone_that_is_no_civil_iana_name_is_refused_for_schedules_and_windows(
    tmp_path: Path, name: str
) -> None:
    """zoneinfo finds these, but none is a place's civil time: `right/Europe/London` put a 09:00
    hand-off an hour off, `localtime` is whatever this machine says. Refused, in a schedule and
    in a maintenance window, with the key path."""
    extra = (
        f'[schedules.s]\ntimezone = "{name}"\n[[schedules.s.layers]]\npeople = ["bob"]\n'
        'shift = "1w"\nstart = 2024-01-01\n'
        '[[services.web.maintenance]]\ndays = ["sun"]\nfrom = "02:00"\nuntil = "04:00"\n'
        f'timezone = "{name}"\n[services.web]\npolicy = "rota"\n'
    )
    errors = errors_of(tmp_path, CHANNELS + PEOPLE + POLICY + extra)
    for where in ("schedules.s.timezone", "services.web.maintenance[0].timezone"):
        assert any(e.startswith(f"{where}: ") and repr(name) in e for e in errors), errors
    assert civil_zone_problem("Europe/London") is None
    assert civil_zone_problem("UTC") is None
    assert civil_zone_problem("Australia/Lord_Howe") is None


GAPPY = """
[people.carol]
email = "carol@example.com"

[schedules.business]
timezone = "America/New_York"
[[schedules.business.layers]]
people = ["carol"]
shift = "1w"
start = 2024-01-01
handoff = "09:00"
restrict = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", until = "17:00" }]

[policies.hours]
[[policies.hours.levels]]
targets = ["schedule:business"]
[[policies.hours.levels]]
targets = ["email:lead@example.com"]

[services.shop]
policy = "hours"
"""


def test_check_reports_every_gap_with_its_window_and_fails_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS.replace("[daemon]\n", "[daemon]\ngap_weeks = 1\n") + GAPPY)
    config = load(path)
    # Monday 8 January 2024, 12:00 New York time.
    now = dt.datetime(2024, 1, 8, 17, 0, tzinfo=dt.UTC).timestamp()
    found = pagerd_main.check_gaps(config, now).lines
    # A line a place, the level first (its policy's next level, an address, still pages):
    # each night, and Friday evening to Monday morning, in its zone.
    assert found == [
        "policies.hours.levels[0]: nobody reachable 5 times in the next 1 week: every Mon-Thu"
        " 17:00 until 09:00 the next day (4 times, Mon 2024-01-08 to Thu 2024-01-11); from Fri"
        " 2024-01-12 17:00 until Mon 2024-01-15 09:00, America/New_York (schedule:business has"
        " nobody); the policy's next level is paged at once then",
        "schedule:business: nobody on call 5 times in the next 1 week: every Mon-Thu 17:00 until"
        " 09:00 the next day (4 times, Mon 2024-01-08 to Thu 2024-01-11); from Fri 2024-01-12"
        " 17:00 until Mon 2024-01-15 09:00, America/New_York (if its gaps are meant, say so:"
        ' gaps = "expected")',
    ]
    assert pagerd_main.main(["--config", str(path), "--check"]) == pagerd_main.EX_GAPS
    assert "1 policy level and 1 schedule with nobody at times" in capsys.readouterr().err
    assert pagerd_main.main(["--config", str(path), "--check", "--allow-gaps"]) == 0
    assert "nobody" in capsys.readouterr().err


def test_check_without_gaps_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS + PEOPLE + POLICY)
    assert pagerd_main.main(["--config", str(path), "--check"]) == 0
    assert ": ok (" in capsys.readouterr().out
