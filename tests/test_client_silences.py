"""`pager silence`, `pager silence list`, `pager silence end` and `pager simulate` on their own:
what they parse, refuse, put on the wire, and print (every string of the reply escaped)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pager import cli
from tests.fake_pagerd import fake_pagerd

SILENCE: dict[str, Any] = {
    "id": 3,
    "service": "api",
    "from": "2027-01-15T08:00:00.000Z",
    "until": "2027-01-15T10:00:00.000Z",
    "reason": "db migration",
    "by": "bob",
    "created_at": "2027-01-15T08:00:00.000Z",
    "ended_at": None,
    "ended_by": None,
}


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reader is in Paris (UTC+1 in January)."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    "argv",
    [
        ["silence", "api"],  # how long?
        ["silence", "api", "--for", "2h"],  # why?
        ["silence", "api", "--for", "2h", "--reason", "  "],
        ["silence", "api", "--for", "2h", "--until", "2027-01-15T10:00Z", "--reason", "r"],
        ["silence", "api", "web", "--for", "2h", "--reason", "r"],
        ["silence", "api", "--for", "2 hours", "--reason", "r"],
        ["silence", "api", "--until", "tomorrow", "--reason", "r"],
        ["silence", "end"],
        ["silence", "end", "three"],
        ["silence", "end", "3", "--reason", "done"],
        ["silence", "list", "api", "web"],
        ["silence", "list", "--reason", "r"],
        ["simulate", "api", "--rounds", "0"],
        ["simulate", "api", "--ack-after", "soon"],
        ["simulate"],
    ],
)
def test_what_cannot_be_a_silence_or_a_simulation_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.main(["--socket", "/nonexistent", *argv])
    assert exit.value.code == 2
    assert capsys.readouterr().err  # it says what is wrong


def test_each_command_puts_its_request_on_the_wire(tmp_path: Path, paris: None) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {
            "ok": True,
            "silence": SILENCE,
            "service": "api",
            "state": "healthy",
            "incident": None,
        }
        socket = ["--socket", str(fake.path)]
        assert (
            cli.main([*socket, "silence", "api", "--for", "90m", "--reason", "db migration"]) == 0
        )
        assert (
            cli.main(
                [
                    *socket,
                    "silence",
                    "api",
                    "--until",
                    "2027-01-15T10:00",
                    "--from",
                    "2027-01-15T09:00+00:00",
                    "--reason",
                    "r",
                    "--by",
                    "al",
                ]
            )
            == 0
        )
        assert cli.main([*socket, "silence", "end", "3", "--by", "carol"]) == 0
        fake.reply = {"ok": True, "silences": []}
        assert cli.main([*socket, "silence", "list"]) == 0
        assert cli.main([*socket, "silence", "list", "web"]) == 0
        # A service named "list" or "end" is silenced all the same: it has --for.
        fake.reply = {"ok": True, "silence": SILENCE}
        assert cli.main([*socket, "silence", "list", "--for", "1h", "--reason", "r"]) == 0
        fake.reply = {
            "ok": True,
            "service": "api",
            "opened_at": "x",
            "timeline": [],
            "end": "exhausted",
        }
        assert (
            cli.main(
                [
                    *socket,
                    "simulate",
                    "api",
                    "--at",
                    "2027-01-26T03:00",
                    "--ack-after",
                    "20m",
                    "--rounds",
                    "2",
                ]
            )
            == 0
        )
        assert cli.main([*socket, "simulate", "api"]) == 0
        sent = fake.requests()
    assert sent == [
        {"op": "silence", "service": "api", "reason": "db migration", "for": "1h30m"},
        # Without a zone, the reader's local time (Paris, UTC+1): sent in UTC.
        {
            "op": "silence",
            "service": "api",
            "reason": "r",
            "until": "2027-01-15T09:00:00.000Z",
            "from": "2027-01-15T09:00:00.000Z",
            "by": "al",
        },
        {"op": "silence_end", "id": 3, "by": "carol"},
        {"op": "silences"},
        {"op": "silences", "service": "web"},
        {"op": "silence", "service": "list", "reason": "r", "for": "1h"},
        {
            "op": "simulate",
            "service": "api",
            "at": "2027-01-26T02:00:00.000Z",
            "ack_after": "20m",
            "rounds": 2,
        },
        {"op": "simulate", "service": "api"},
    ]


def test_a_silence_is_printed_in_a_line_and_its_end_in_another() -> None:
    assert cli.render("silence", {"silence": SILENCE}) == (
        "silence 3 of api: from 2027-01-15T08:00:00.000Z until 2027-01-15T10:00:00.000Z"
        " by bob: db migration"
    )
    ended = {
        **SILENCE,
        "until": "2027-01-15T08:30:00.000Z",
        "ended_at": "2027-01-15T08:30:00.000Z",
        "ended_by": "carol",
    }
    assert cli.render("silence_end", {"silence": ended}) == (
        "silence 3 of api ended by carol (from 2027-01-15T08:00:00.000Z: db migration)"
    )


def test_silences_are_listed_in_a_table_and_under_a_status() -> None:
    web = {**SILENCE, "id": 4, "service": "web", "by": None, "reason": "deploy"}
    table = cli.render("silences", {"silences": [SILENCE, web]}).splitlines()
    assert table[0].split() == ["ID", "SERVICE", "FROM", "UNTIL", "BY", "REASON"]
    assert table[1].split() == [
        "3",
        "api",
        "2027-01-15T08:00:00.000Z",
        "2027-01-15T10:00:00.000Z",
        "bob",
        "db",
        "migration",
    ]
    assert table[2].split()[:2] == ["4", "web"] and table[2].endswith("deploy")
    assert cli.render("silences", {"silences": []}) == "no silence in force or to come"
    status = {
        "service": "api",
        "state": "healthy",
        "incident": None,
        "silences": [SILENCE],
        "silenced_until": SILENCE["until"],
    }
    assert cli.render("status", status).endswith(
        "\n\napi silenced from 2027-01-15T08:00:00.000Z until 2027-01-15T10:00:00.000Z by bob:"
        " db migration (silence 3)"
    )
    every = cli.render(
        "status", {"services": [status, {**status, "service": "web", "silences": []}]}
    )
    assert every.count("silenced from") == 1


def test_what_a_client_wrote_in_a_silence_is_escaped_on_the_terminal() -> None:
    evil = {**SILENCE, "reason": "ok\x1b[2J\nfake row\u202e", "by": "\x07bob"}
    for text in (
        cli.render("silence", {"silence": evil}),
        cli.render("silences", {"silences": [evil]}),
        cli.render(
            "status", {"service": "api", "state": "healthy", "incident": None, "silences": [evil]}
        ),
    ):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "\nfake row" not in text  # no line of its own
        assert "\\x1b[2J\\nfake row\\u202e" in text


def test_a_simulation_is_printed_a_step_a_line() -> None:
    reply = {
        "service": "api",
        "opened_at": "2027-01-26T03:00:00.000Z",
        "timeline": [
            {
                "at": "2027-01-26T03:00:00.000Z",
                "after": "0s",
                "event": "held",
                "round": 1,
                "level": 0,
                "until": "2027-01-26T04:00:00.000Z",
            },
            {
                "at": "2027-01-26T04:00:00.000Z",
                "after": "1h",
                "event": "notify",
                "round": 1,
                "level": 1,
                "notify": [{"target": "email:alice@example.com"}, {"target": "sms:+14155550100"}],
            },
            {
                "at": "2027-01-26T04:15:00.000Z",
                "after": "1h15m",
                "event": "acknowledged",
                "round": 1,
                "level": 1,
            },
        ],
        "end": "acknowledged",
    }
    assert cli.render("simulate", reply).splitlines() == [
        "api: an incident opened at 2027-01-26T03:00:00.000Z",
        "  2027-01-26T03:00:00.000Z  +0s     held by a silence until 2027-01-26T04:00:00.000Z",
        "  2027-01-26T04:00:00.000Z  +1h     notify level 1 round 1: email:alice@example.com,"
        " sms:+14155550100",
        "  2027-01-26T04:15:00.000Z  +1h15m  acknowledged: escalation stops",
    ]
    cut = {**reply, "timeline": reply["timeline"][:2], "end": "rounds"}
    assert cli.render("simulate", cut).endswith("(more rounds follow: --rounds)")
    expired = {"at": "2027-01-26T08:15:00.000Z", "after": "5h15m", "event": "expired",
               "round": 1, "level": 1}  # fmt: skip
    expiring = {**reply, "timeline": [*reply["timeline"], expired], "end": "exhausted"}
    assert cli.render("simulate", expiring).splitlines()[-1] == (
        "  2027-01-26T08:15:00.000Z  +5h15m  acknowledgement expired (ack_expiry): escalation"
        " restarts at level 1"
    )


def test_an_alert_held_by_a_silence_says_so() -> None:
    incident = {
        "id": "api#1", "level": 0, "acknowledged": False, "acknowledged_by": None, "alerts": 1,
        "silenced": True, "next_escalation_at": "2027-01-15T10:00:00.000Z",
    }  # fmt: skip
    reply = {"service": "api", "state": "unhealthy", "incident": incident}
    assert cli.render("alert", reply) == (
        "api: unhealthy, incident api#1, paging held by a silence until"
        " 2027-01-15T10:00:00.000Z, 1 alert(s)"
    )
    later = {**reply, "incident": {**incident, "level": 1}}
    assert "level 1 notified, paging held by a silence until" in cli.render("alert", later)


def test_a_silence_longer_than_a_day_is_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--until` without `--from` starts now: a date meant as the end of tonight's window, weeks
    ahead, silences everything until then. The silence is made (a warning, not a refusal: what
    worked before still does), and the warning says for how long and how to end it."""
    eight_weeks = {**SILENCE, "until": "2027-03-12T08:00:00.000Z"}
    with fake_pagerd(tmp_path) as fake:
        socket = ["--socket", str(fake.path)]
        fake.reply = {"ok": True, "silence": eight_weeks}
        argv = [*socket, "silence", "api", "--until", "2027-03-12T08:00Z", "--reason", "drill"]
        assert cli.main(argv) == 0
        long = capsys.readouterr()
        fake.reply = {"ok": True, "silence": SILENCE}  # two hours
        assert cli.main([*socket, "silence", "api", "--for", "2h", "--reason", "r"]) == 0
        short = capsys.readouterr()
    assert long.out.startswith("silence 3 of api: from 2027-01-15T08:00:00.000Z until 2027-03-12")
    assert long.err == (
        "pager: warning: silence 3 pages nobody for api for 56d, from 2027-01-15T08:00:00.000Z"
        " until 2027-03-12T08:00:00.000Z (--until without --from starts now); if that is not"
        " what was meant, end it: pager silence end 3\n"
    )
    assert short.err == ""


def test_a_silenced_service_is_marked_in_its_row() -> None:
    """Not only a line under the table: the row says so, `silenced` or `maintenance` (a window
    in force, and no silence holding longer)."""
    quiet = {"service": "api", "state": "healthy", "incident": None, "silences": [SILENCE],
             "silenced_until": SILENCE["until"]}  # fmt: skip
    window = {"until": "2027-01-17T04:00:00.000Z", "windows": ["sun 02:00-04:00 Europe/London"]}
    held = {"id": "db#1", "level": 0, "round": 1, "acknowledged": False,
            "acknowledged_by": None, "alerts": 1, "opened_at": "2027-01-17T02:30:00.000Z",
            "next_escalation_at": window["until"], "exhausted": False, "silenced": True,
            "failed_deliveries": 0}  # fmt: skip
    mended = {"service": "db", "state": "unhealthy", "incident": held, "maintenance": window,
              "silenced_until": window["until"]}  # fmt: skip
    plain = {"service": "web", "state": "healthy", "incident": None}
    table = cli.render("status", {"services": [quiet, mended, plain]}).splitlines()
    rows = {line.split()[0]: line for line in table[1:4]}
    assert rows["api"].split()[1:3] == ["healthy,", "silenced"]
    assert rows["db"].split()[1:3] == ["unhealthy,", "maintenance"]
    assert rows["web"].split()[1:3] == ["healthy", "-"]
