"""`pager override` and `pager oncall` on the client's side: times read as documented and sent with
their offset, usage mistakes exit 2 before anything is sent, replies shown in both zones and
escaped."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from pager import cli, oncall_cli
from pager.weekly import instant


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def line(*argv: str) -> dict[str, object]:
    parser = cli.build_parser()
    args = parser.parse_args(list(argv))
    decoded: dict[str, object] = json.loads(oncall_cli.request(args, parser))
    return decoded


def test_times_are_read_as_documented(new_york: None) -> None:
    utc = dt.datetime(2024, 5, 1, 13, 0, tzinfo=dt.UTC).timestamp()
    assert oncall_cli.parse_time("2024-05-01T09:00-04:00") == utc
    assert oncall_cli.parse_time("2024-05-01T13:00Z") == utc
    assert oncall_cli.parse_time("2024-05-01 09:00") == utc  # the reader's local time
    assert oncall_cli.parse_time("2024-05-01T09:00") == utc
    assert oncall_cli.parse_time("now", lambda: 100.0) == 100.0
    assert oncall_cli.parse_time("+8h", lambda: 100.0) == 100.0 + 8 * 3600
    assert oncall_cli.parse_time("+2d", lambda: 0.0) == 2 * 86400
    for bad in ("tomorrow", "+8", "8h", "2024-13-01", "0001-01-01T00:00Z"):
        with pytest.raises(argparse.ArgumentTypeError):
            oncall_cli.parse_time(bad)


def test_a_local_time_the_clocks_skip_is_the_moment_they_jump_as_in_schedules(
    new_york: None,
) -> None:
    """New York's clocks go from 02:00 to 03:00 on 14 March 2027: 02:30 that night is read as
    03:00 EDT (07:00Z), as a schedule's hand-off at 02:30 happens (`pager.weekly.instant`), not
    an hour earlier; 01:30 on 7 November, shown twice, is its first occurrence (EDT). The same
    for every command's times: `oncall --at`, `override --from/--until`, `silence
    --from/--until`, `simulate --at`."""
    jump = dt.datetime(2027, 3, 14, 7, 0, tzinfo=dt.UTC).timestamp()
    assert oncall_cli.parse_time("2027-03-14 02:30") == jump
    assert oncall_cli.parse_time("2027-03-14T02:00") == jump
    assert oncall_cli.parse_time("2027-03-14 01:59") == jump - 60
    assert oncall_cli.parse_time("2027-03-14 03:00") == jump
    assert instant(dt.datetime(2027, 3, 14, 2, 30), ZoneInfo("America/New_York")) == jump
    first = dt.datetime(2027, 11, 7, 5, 30, tzinfo=dt.UTC).timestamp()
    assert oncall_cli.parse_time("2027-11-07 01:30") == first
    assert line("oncall", "--at", "2027-03-14 02:30")["at"] == "2027-03-14T07:00:00.000Z"
    made = line("override", "primary", "--by", "bob", "--from", "2027-03-14 02:30",
                "--until", "2027-03-14 02:45")  # fmt: skip
    assert (made["from"], made["until"]) == ("2027-03-14T07:00:00.000Z", "2027-03-14T07:00:00.000Z")
    parser = cli.build_parser()
    silence = parser.parse_args(
        ["silence", "api", "--from", "2027-03-14 02:30", "--until", "2027-03-14 04:00",
         "--reason", "r"]
    )  # fmt: skip
    assert (silence.from_, silence.until) == (jump, jump + 3600)
    simulate = parser.parse_args(["simulate", "api", "--at", "2027-03-14 02:30"])
    assert simulate.at == jump


def test_requests_carry_times_with_their_offset(new_york: None) -> None:
    assert line(
        "override", "primary", "--by", "bob", "--for", "alice",
        "--from", "2024-05-01 09:00", "--until", "2024-05-02T09:00-04:00",
    ) == {
        "op": "override", "schedule": "primary", "by": "bob", "for": "alice",
        "from": "2024-05-01T13:00:00.000Z", "until": "2024-05-02T13:00:00.000Z",
    }  # fmt: skip
    assert line("override", "list", "primary") == {"op": "overrides", "schedule": "primary"}
    assert line("override", "list") == {"op": "overrides"}  # every schedule's
    assert line("override", "remove", "12") == {"op": "override_remove", "id": 12}
    assert line("oncall") == {"op": "oncall"}
    assert line("oncall", "primary", "--at", "2024-05-01T13:00Z", "--next", "5") == {
        "op": "oncall", "schedule": "primary", "at": "2024-05-01T13:00:00.000Z", "next": 5,
    }  # fmt: skip
    # As every command writes a time on the wire (`pager.timefmt.isoformat`, `pager silence`'s
    # too): UTC, to the millisecond.
    assert line("oncall", "--at", "2024-05-01T14:00:00.25+01:00")["at"] == (
        "2024-05-01T13:00:00.250Z"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["override", "primary", "--by", "bob"],
        ["override", "primary", "extra", "--by", "bob", "--from", "now", "--until", "+1h"],
        ["override", "list", "primary", "extra"],
        ["override", "list", "primary", "--by", "bob"],
        ["override", "remove", "twelve"],
        ["oncall", "--next", "99"],
        ["oncall", "--at", "someday"],
    ],
)
def test_usage_mistakes_exit_2_before_anything_is_sent(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--socket", os.devnull, *argv])
    assert stopped.value.code == 2


def test_replies_are_shown_in_the_schedules_zone_and_the_readers_and_escaped(
    new_york: None,
) -> None:
    reply = {
        "schedules": [
            {
                "schedule": "primary", "timezone": "Europe/London",
                "at": "2024-05-01T14:00:00+01:00", "on_call": "alice\x1b[2J",
                "until": "2024-05-02T09:00:00+01:00",
                "next": [{"from": "2024-05-02T09:00:00+01:00",
                          "until": "2024-05-03T09:00:00+01:00", "person": None}],
            }
        ]
    }  # fmt: skip
    text = cli.render("oncall", reply)
    assert text.splitlines() == [
        "primary (Europe/London) at 2024-05-01 14:00 +0100 (2024-05-01 09:00 -0400 here):"
        " alice\\x1b[2J until 2024-05-02 09:00 +0100 (2024-05-02 04:00 -0400 here)",
        "  2024-05-02 09:00 +0100 (2024-05-02 04:00 -0400 here)  NOBODY (a gap)",
    ]
    override = {
        "id": 3,
        "schedule": "primary",
        "by": "bob",
        "for": None,
        "from": "2024-05-01T13:00:00-04:00",
        "until": "2024-05-01T14:00:00-04:00",
    }
    assert cli.render("override", {"override": override}) == (
        "added override 3 on primary: bob for whoever is on call, from 2024-05-01 13:00 -0400"
        " until 2024-05-01 14:00 -0400"
    )


def test_override_list_shows_who_made_each_who_removed_them_and_those_ignored(
    new_york: None,
) -> None:
    def override(id: int, by: str, **more: object) -> dict[str, object]:
        return {
            "id": id, "schedule": "primary", "by": by, "for": "alice",
            "from": "2024-05-01T13:00:00-04:00", "until": "2024-05-01T14:00:00-04:00",
            "made_by": "ops\x1b[2J", "ignored": None, **more,
        }  # fmt: skip

    reply = {
        "schedule": "primary",
        "timezone": "America/New_York",
        "overrides": [override(3, "bob"), override(4, "zed", ignored="zed is not in [people]")],
        "removed": [
            override(
                2,
                "carol",
                made_by=None,
                removed_by="integration shop",
                removed_at="2024-04-30T10:00:00-04:00",
            )
        ],
    }
    lines = cli.render("override", reply).splitlines()
    assert lines == [
        "primary (America/New_York):",
        "  override 3 on primary: bob for alice, from 2024-05-01 13:00 -0400 until"
        " 2024-05-01 14:00 -0400, made by ops\\x1b[2J",
        "  override 4 on primary: zed for alice, from 2024-05-01 13:00 -0400 until"
        " 2024-05-01 14:00 -0400, made by ops\\x1b[2J (IGNORED: zed is not in [people];"
        " remove it)",
        "  removed, not yet ended:",
        "    override 2 on primary: carol for alice, from 2024-05-01 13:00 -0400 until"
        " 2024-05-01 14:00 -0400; removed by integration shop at 2024-04-30 10:00 -0400",
    ]
    removed = cli.render("override", {"removed": override(3, "bob"), "removed_by": "root"})
    assert removed.endswith(", made by ops\\x1b[2J (removed by root)")


def test_the_end_of_the_search_is_no_hand_off(new_york: None) -> None:
    """Before a rotation starts (or with nobody to hand over to) `until` is where the search
    stopped, 26 weeks on: said so, not shown as a hand-off to nobody at that time."""
    at, horizon = "2024-05-01T14:00:00+01:00", "2024-10-30T13:00:00+00:00"
    nobody: dict[str, object] = {
        "schedule": "new", "timezone": "Europe/London", "at": at, "on_call": None,
        "until": horizon, "horizon": horizon, "next": [],
    }  # fmt: skip
    alone = dict(nobody, schedule="solo", on_call="alice")
    handing = dict(alone, schedule="rota", until="2024-05-02T09:00:00+01:00")
    text = cli.render("oncall", {"schedules": [nobody, alone, handing]})
    assert text.splitlines() == [
        "new (Europe/London) at 2024-05-01 14:00 +0100 (2024-05-01 09:00 -0400 here):"
        " nobody (no shift within 26 weeks)",
        "solo (Europe/London) at 2024-05-01 14:00 +0100 (2024-05-01 09:00 -0400 here):"
        " alice (no hand-off within 26 weeks)",
        "rota (Europe/London) at 2024-05-01 14:00 +0100 (2024-05-01 09:00 -0400 here):"
        " alice until 2024-05-02 09:00 +0100 (2024-05-02 04:00 -0400 here)",
    ]


def test_every_schedule_s_overrides_are_listed_each_with_its_schedule(new_york: None) -> None:
    one = {"id": 3, "schedule": "primary", "by": "bob", "for": "alice",
           "from": "2024-05-01T13:00:00+01:00", "until": "2024-05-01T14:00:00+01:00"}  # fmt: skip
    two = dict(one, id=4, schedule="business", by="carol\x1b[2J", **{"for": None})
    text = cli.render("override", {"overrides": [one, two]})
    assert text.splitlines() == [
        "override 3 on primary: bob for alice, from 2024-05-01 13:00 +0100 (2024-05-01 08:00"
        " -0400 here) until 2024-05-01 14:00 +0100 (2024-05-01 09:00 -0400 here)",
        "override 4 on business: carol\\x1b[2J for whoever is on call, from 2024-05-01 13:00"
        " +0100 (2024-05-01 08:00 -0400 here) until 2024-05-01 14:00 +0100 (2024-05-01 09:00"
        " -0400 here)",
    ]
    assert cli.render("override", {"overrides": []}) == "no overrides to come"
