"""`pagerd --check` and the gaps of a real team: a few lines, most severe first; a schedule
whose gaps are meant says so (`gaps = "expected"`) and is not reported on its own; a level
with nobody fails the check unless `--allow-gaps`; a policy that reaches nobody at all fails it
whatever, and is said first, loudly."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from pagerd import main as pagerd_main
from pagerd.config import load
from tests.harness import CHANNELS, errors_of

PEOPLE = """
[people.alice]
email = "alice@example.com"
[people.bob]
email = "bob@example.com"
[people.carol]
email = "carol@example.com"

[schedules.business]
timezone = "Europe/London"
gaps = "expected"
[[schedules.business.layers]]
people = ["carol"]
shift = "1w"
start = 2024-01-01
handoff = "09:00"
restrict = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", until = "17:00" }]

[schedules.sre-emea]
timezone = "Europe/London"
gaps = "expected"
[[schedules.sre-emea.layers]]
people = ["alice"]
shift = "1w"
start = 2024-01-01
restrict = [{ days = ["mon", "tue", "wed", "thu",
  "fri", "sat", "sun"], from = "07:00", until = "19:00" }]

[schedules.sre-amer]
timezone = "America/New_York"
gaps = "expected"
[[schedules.sre-amer.layers]]
people = ["bob"]
shift = "1w"
start = 2024-01-01
restrict = [{ days = ["mon", "tue", "wed", "thu",
  "fri", "sat", "sun"], from = "14:00", until = "02:00" }]
"""

# Follow-the-sun as two schedules in one level, each on its own clock, then a fallback.
SUN = """
[policies.sun]
[[policies.sun.levels]]
targets = ["schedule:sre-emea", "schedule:sre-amer"]
[[policies.sun.levels]]
targets = ["email:lead@example.com"]

[services.api]
policy = "sun"
"""

# Business hours with the desk beside them in the level: never empty.
DESK = """
[policies.desk]
[[policies.desk.levels]]
targets = ["schedule:business", "email:desk@example.com"]

[services.shop]
policy = "desk"
"""

# Business hours alone: nights and weekends page nobody at all.
HOURS = """
[policies.hours]
[[policies.hours.levels]]
targets = ["schedule:business"]

[services.shop]
policy = "hours"
"""

YEAR = CHANNELS.replace("[daemon]\n", "[daemon]\ngap_weeks = 52\n")


def check(folder: Path, text: str, *args: str) -> int:
    path = folder / "pager.toml"
    path.write_text(text)
    return pagerd_main.main(["--config", str(path), "--check", *args])


def test_expected_gaps_beside_a_fallback_pass_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, YEAR + PEOPLE + DESK) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # nothing to act on
    assert ": ok (1 services, 1 policies)" in printed.out
    assert 'pagerd: note: 3 schedules have gaps as meant (gaps = "expected")' in printed.out


def test_a_level_with_nobody_fails_unless_allowed_and_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the weeks when New York's clocks and London's differ (March, and late October),
    06:00 to 07:00 London has nobody in either region: the one real problem, in one line (a
    year of each region's nightly gaps, meant, is not reported)."""
    assert check(tmp_path, YEAR + PEOPLE + SUN) == pagerd_main.EX_GAPS
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("pagerd: policies.sun.levels[0]: nobody reachable ")
    assert "06:00 until 07:00" in err[0]
    assert err[1].endswith("--allow-gaps to accept them)")
    assert check(tmp_path, YEAR + PEOPLE + SUN, "--allow-gaps") == 0
    assert "policies.sun.levels[0]" in capsys.readouterr().err


def test_a_policy_that_reaches_nobody_fails_even_allowed_and_is_said_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for allowed in ((), ("--allow-gaps",)):
        assert check(tmp_path, YEAR + PEOPLE + SUN + HOURS, *allowed) == pagerd_main.EX_GAPS
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith("pagerd: policies.hours: NO LEVEL REACHES ANYONE ")
        assert err[0].endswith("an incident then pages nobody at all")
        assert err[1].startswith("pagerd: policies.sun.levels[0]: ")
        assert "--allow-gaps does not accept this" in err[-1]
        assert "1 policy reaches nobody at all" in err[-1]


def test_the_summary_of_twenty_weeks_names_each_shape_once(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(YEAR.replace("gap_weeks = 52", "gap_weeks = 20") + PEOPLE + SUN + HOURS)
    now = dt.datetime(2027, 1, 4, 12, tzinfo=dt.UTC).timestamp()
    report = pagerd_main.check_gaps(load(path), now)
    assert (report.policies, report.levels, report.schedules) == (1, 1, 0)
    assert [line.split(":")[0] for line in report.lines] == [
        "policies.hours",
        "policies.sun.levels[0]",
    ]
    assert "every Mon-Thu 17:00 until 09:00 the next day (80 times" in report.lines[0]
    assert "every Fri 17:00 until Mon 09:00 (20 times" in report.lines[0]
    assert (
        "every day 06:00 until 07:00 (13 times, Mon 2027-03-15 to Sat 2027-03-27)"
        in (report.lines[1])
    )


def test_gaps_takes_expected_or_unexpected(tmp_path: Path) -> None:
    text = YEAR + PEOPLE.replace('gaps = "expected"', 'gaps = "sometimes"', 1) + DESK
    errors = errors_of(tmp_path, text)
    assert any(e.startswith('schedules.business.gaps: expected "expected"') for e in errors)
    unexpected = YEAR + PEOPLE.replace('gaps = "expected"', 'gaps = "unexpected"', 1) + DESK
    path = tmp_path / "pager.toml"
    path.write_text(unexpected)
    assert not load(path).schedules["business"].expected_gaps
    assert load(path).schedules["sre-emea"].expected_gaps


DOC = Path(__file__).resolve().parent.parent / "docs" / "schedules.md"


def _block(after: str) -> str:
    """The first fenced block of docs/schedules.md after the text `after`."""
    found = re.search(re.escape(after) + r"\n\n```\w*\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, f"no block after {after!r} in docs/schedules.md"
    return found.group(1)


def _team(folder: Path, team: str, weeks: int) -> Path:
    people = "".join(
        f'[people.{n}]\nemail = "{n}@example.com"\n'
        for n in ("alice", "bob", "carol", "dave", "erin")
    )
    text = CHANNELS.replace("[daemon]\n", f"[daemon]\ngap_weeks = {weeks}\n") + people + team
    path = folder / "pager.toml"
    path.write_text(text + '\n[services.api]\npolicy = "platform"\n')
    return path


def test_the_documented_gaps_are_what_check_says(tmp_path: Path) -> None:
    team = _block("own; what it leaves empty still is (a level, a policy):")
    config = load(_team(tmp_path, team, 20))
    now = dt.datetime(2027, 1, 4, 12, tzinfo=dt.UTC).timestamp()
    report = pagerd_main.check_gaps(config, now)
    shown = _block("most severe first; it exits 65):")
    assert "".join(f"pagerd: {line}\n" for line in report.lines) == shown
    assert report.expected == (
        '2 schedules have gaps as meant (gaps = "expected"): 281 in the next 20 weeks, not'
        " reported on their own"
    )


@pytest.mark.parametrize("year", range(2026, 2032))
def test_the_recommended_follow_the_sun_has_no_gap_in_any_year(tmp_path: Path, year: int) -> None:
    """The docs' advice, checked: emea 06:00-20:00 London and amer 14:00-02:00 New York overlap
    by an hour at each hand-over, which absorbs the weeks their clocks differ."""
    team = _block("own; what it leaves empty still is (a level, a policy):").replace(
        'from = "07:00", until = "19:00"', 'from = "06:00", until = "20:00"'
    )
    assert 'from = "06:00", until = "20:00"' in team
    config = load(_team(tmp_path, team, 52))
    now = dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp()
    report = pagerd_main.check_gaps(config, now)
    assert not [line for line in report.lines if "platform" in line]
