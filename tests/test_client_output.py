"""What `pager` prints: nothing a client sent reaches the terminal as a control sequence, tables
fit the terminal, the unhealthy come first, and every outcome has its exit code."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest

from pager import __version__, cli
from tests.fake_pagerd import fake_pagerd
from tests.processes import PAGER, wait_for

# ESC and OSC sequences, CR, LF (a fake table row), a C1 control, a right-to-left override.
EVIL: Final = "x\x1b[2J\x1b]0;owned\x07\r\nweb  healthy  -\x9b31m\x85\u202eevil\u2028\\"
# What may appear in readable output: printable characters, and newlines between its lines.
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e]")


def _incident(**changes: Any) -> dict[str, Any]:
    incident = {
        "id": "api#1",
        "level": 1,
        "round": 1,
        "acknowledged": True,
        "acknowledged_by": EVIL,
        "acknowledged_at": "2027-01-15T08:01:00.000Z",
        "alerts": 2,
        "message": EVIL,
        "opened_at": "2027-01-15T08:00:00.000Z",
        "next_escalation_at": None,
        "exhausted": False,
        "failed_deliveries": 1,
    }
    return {**incident, **changes}


def _status(service: str, **changes: Any) -> dict[str, Any]:
    if changes.get("healthy"):
        return {"service": service, "state": "healthy", "incident": None}
    return {"service": service, "state": "unhealthy", "incident": _incident(**changes)}


HISTORY: Final = {
    "service": "api",
    "incident": "api#1",
    "message": EVIL,
    "opened_at": "2027-01-15T08:00:00.000Z",
    "closed_at": None,
    "timeline": [
        {"at": "t1", "event": "alert", "detail": EVIL, "peer": {"uid": 7, "user": EVIL, "pid": 9}},
        {"at": "t2", "event": "ack", "by": EVIL, "peer": {"uid": 7, "user": None, "pid": 9}},
        {"at": "t3", "event": "delivery", "outcome": "retrying", "target": "x", "error": EVIL},
        {"at": "t4", "event": EVIL},
    ],
}
ONE: Final = {
    **_status("api"),
    "incident": {
        **_incident(),
        "notifications": [
            {
                "id": "n1",
                "channel": "email",
                "target": "email:a@example.com",
                "round": 1,
                "level": 1,
                "state": "retrying",
                "attempts": 3,
                "last_error": EVIL,
                "provider_id": None,
                "sent_at": None,
            }
        ],
    },
}


@pytest.mark.parametrize(
    ("command", "reply", "lines"),
    [
        ("status", {"services": [_status("api"), _status("web", healthy=True)]}, 3),
        ("status", ONE, 5),
        ("history", HISTORY, 5),
        ("alert", _status("api"), 1),
        ("metrics", {"text": f"# {EVIL.replace(chr(10), '')}\npagerd_up 1\n"}, 2),
    ],
)
def test_client_strings_are_escaped_in_readable_output(
    command: str, reply: dict[str, Any], lines: int
) -> None:
    text = cli.render(command, reply)
    assert not _CONTROL.search(text), text
    assert len(text.split("\n")) == lines, text  # no row made up by a newline
    if command != "alert":  # its summary line shows none of the text
        assert "\\x1b[2J\\x1b]0;owned\\x07\\r" in text
        assert "\\x9b31m\\x85\\u202eevil\\u2028" in text


def test_the_terminal_gets_escapes_and_json_stays_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {"ok": True, **ONE}
        assert cli.main(["--socket", str(fake.path), "status", "api"]) == 0
        readable = capsys.readouterr().out
        assert cli.main(["--socket", str(fake.path), "status", "--json", "api"]) == 0
        exact = capsys.readouterr().out
        fake.reply = {"ok": False, "error": {"code": "no_open_incident", "message": EVIL}}
        assert cli.main(["--socket", str(fake.path), "ack", "api"]) == 1
        error = capsys.readouterr().err
    assert not _CONTROL.search(readable)
    assert not _CONTROL.search(error.rstrip("\n")) and error.count("\n") == 1
    assert not _CONTROL.search(exact.replace("\n", ""))
    assert json.loads(exact) == ONE


@pytest.mark.parametrize(
    "value", ["-1", "0", "nan", "inf", "-inf", "soon", "9.3e9", "1e10", "86401"]
)
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--timeout", value, "ping"])
    err = capsys.readouterr().err
    assert excinfo.value.code == 2
    assert "--timeout" in err and "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.strip() == f"pager {__version__}"


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        ("busy", 75),
        ("unavailable", 75),
        ("forbidden", 77),
        ("internal", 1),
        ("unknown_service", 1),
        ("no_open_incident", 1),
    ],
)
def test_exit_codes_by_error_code(tmp_path: Path, code: str, exit_code: int) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {"ok": False, "error": {"code": code, "message": "no"}}
        assert cli.main(["--socket", str(fake.path), "alert", "api"]) == exit_code


def _many() -> dict[str, Any]:
    return {
        "services": [
            _status("a-healthy", healthy=True),
            _status("b-acked", id="b-acked#1", acknowledged_by="bob"),
            _status("c-healthy", healthy=True),
            _status("d-open", id="d-open#4", acknowledged=False, acknowledged_by=None),
        ]
    }


def test_the_unhealthy_come_first_unacknowledged_before_acknowledged() -> None:
    rows = cli.render("status", _many()).splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["d-open", "b-acked", "a-healthy", "c-healthy"]


def test_unhealthy_lists_only_them_in_the_table_and_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {"ok": True, **_many()}
        assert cli.main(["--socket", str(fake.path), "status", "--unhealthy"]) == 0
        table = capsys.readouterr().out
        assert cli.main(["--socket", str(fake.path), "--json", "status", "--unhealthy"]) == 0
        listed = json.loads(capsys.readouterr().out)
        fake.reply = {"ok": True, "services": [_status("a", healthy=True)]}
        assert cli.main(["--socket", str(fake.path), "status", "--unhealthy"]) == 0
        none = capsys.readouterr().out
    assert [row.split()[0] for row in table.splitlines()[1:]] == ["d-open", "b-acked"]
    assert [s["service"] for s in listed["services"]] == ["b-acked", "d-open"]  # pagerd's order
    assert none.strip() == "no service to show"


def test_rows_fit_the_width_given_with_a_marker_where_cut() -> None:
    name = "payments-" + "x" * 31
    reply = {
        "services": [
            _status(name, id=f"{name}#12", acknowledged_by="b" * 256),
            _status("web", healthy=True),
        ]
    }
    wide = cli.render("status", reply)
    narrow = cli.render("status", reply, width=120)
    assert max(map(len, wide.splitlines())) > 300
    assert all(len(line) <= 120 for line in narrow.splitlines()), narrow
    header, row, web = narrow.splitlines()
    assert header.split()[:3] == ["SERVICE", "STATE", "INCIDENT"]
    assert row.startswith(f"{name}  unhealthy  {name}#12  bbb") and "…" in row
    assert web.split()[:2] == ["web", "healthy"]


def test_a_service_name_or_incident_is_never_cut_the_row_wraps_instead() -> None:
    name = "payments-" + "x" * 119  # the longest a name can be: 128
    reply = {"services": [_status(name, id=f"{name}#12", acknowledged_by="bob")]}
    header, row = cli.render("status", reply, width=120).splitlines()
    assert header.split() == ["SERVICE", "INCIDENT"]  # all else left out, and still too wide
    assert row.split() == [name, f"{name}#12"]


WIDE_ROWS: Final = {
    "ok": True,
    "services": [
        _status("payments-api", id="payments-api#12", acknowledged_by="alice", alerts=140),
        _status(
            "search-indexer",
            id="search-indexer#3",
            acknowledged=False,
            acknowledged_by=None,
            opened_at="2026-11-30T21:02:00.000Z",
            next_escalation_at="2026-11-30T21:17:00.000Z",
        ),
        _status("web", healthy=True),
    ],
}


@pytest.mark.parametrize(
    ("today", "shown"),
    [
        ("2027-01-15", "08:00:00Z"),  # today: the time alone
        ("2027-03-01", "01-15 08:00Z"),  # this year: no year, no seconds
        ("2028-01-01", "2027-01-15"),  # another year: the date alone
    ],
)
def test_times_shorten_first_relative_to_today(today: str, shown: str) -> None:
    lines = cli.render("status", WIDE_ROWS, width=100, today=today).splitlines()
    assert all(len(line) <= 100 for line in lines), lines
    assert shown in lines[2] and "2027-01-15T" not in lines[2]


def test_a_table_that_fits_is_shown_as_it_always_was() -> None:
    reply = {"services": [_status("api", acknowledged_by="bob")]}
    assert cli.render("status", reply, width=200) == cli.render("status", reply)
    assert "2027-01-15T08:00:00.000Z" in cli.render("status", reply, width=200)


def _on_a_terminal(tmp_path: Path, columns: int, reply: dict[str, Any]) -> list[str]:
    primary, secondary = os.openpty()
    try:
        with fake_pagerd(tmp_path) as fake:
            fake.reply = reply
            code = subprocess.run(
                [*PAGER, "--socket", str(fake.path), "status"],
                stdout=secondary,
                env={**os.environ, "COLUMNS": str(columns)},
                timeout=30,
                check=False,
            ).returncode
        os.close(secondary)
        output = b""
        with contextlib.suppress(OSError):  # EIO once everything written is read
            while chunk := os.read(primary, 65536):
                output += chunk
    finally:
        os.close(primary)
    assert code == 0
    return output.decode().splitlines()


@pytest.mark.parametrize(
    ("columns", "header"),
    [
        (80, "SERVICE STATE INCIDENT ACK NEXT DELIVERY"),
        (60, "SERVICE STATE INCIDENT ACK"),
        (40, "SERVICE INCIDENT ACK"),
    ],
)
def test_on_a_terminal_rows_fit_its_width_and_names_stay_whole(
    tmp_path: Path, columns: int, header: str
) -> None:
    lines = _on_a_terminal(tmp_path, columns, WIDE_ROWS)
    assert len(lines) == 4 and all(len(line) <= columns for line in lines), lines
    assert " ".join(lines[0].split()) == header
    assert lines[1].split()[0] == "search-indexer" and "search-indexer#3" in lines[1]
    assert lines[2].split()[0] == "payments-api" and "payments-api#12" in lines[2]
    assert "…" not in "".join(lines)


def test_output_that_is_not_a_terminal_is_not_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {"ok": True, "services": [_status("api", acknowledged_by="b" * 256)]}
        assert cli.main(["--socket", str(fake.path), "status"]) == 0
    assert "b" * 256 in capsys.readouterr().out


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.replying.clear()
        fake.reply = {"ok": True, "text": "x\n" * 100_000}
        proc = subprocess.Popen(
            [*PAGER, "--socket", str(fake.path), "metrics"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # `pager metrics | head -0`
        fake.replying.set()
        with proc.stderr:
            err = proc.stderr.read()
        code = proc.wait(timeout=30)
    assert b"Traceback" not in err, err
    assert code == 0


def test_ctrl_c_while_waiting_for_the_reply_exits_130_without_a_traceback(tmp_path: Path) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.replying.clear()  # pagerd is slow to answer
        proc = subprocess.Popen(
            [*PAGER, "--socket", str(fake.path), "alert", "api"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        wait_for(lambda: fake.lines, 30, "the request sent")
        proc.send_signal(signal.SIGINT)
        with proc.stderr:
            err = proc.stderr.read()
        code = proc.wait(timeout=30)
        fake.replying.set()
    assert code == 130
    assert b"Traceback" not in err and b"interrupted" in err


def test_metrics_keep_their_own_escapes() -> None:
    text = 'pagerd_notifications_total{target="a\\\\b \\"q\\""} 1\n'
    assert cli.render("metrics", {"text": text}) == text.rstrip("\n")


def test_on_a_terminal_free_text_is_cut_with_a_marker(tmp_path: Path) -> None:
    reply = {"ok": True, "services": [_status("api", acknowledged_by="b" * 256)]}
    lines = _on_a_terminal(tmp_path, 100, reply)
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines), lines
    assert "…" in lines[1]


def _columns_shown(text: str) -> int:
    return sum(2 if "\u4e00" <= c <= "\u9fff" else 1 for c in text)


def test_wide_characters_count_as_two_columns() -> None:
    reply = {
        "services": [
            _status("api", acknowledged_by="山田太郎" * 20),
            _status("web", acknowledged_by="bob"),
        ]
    }
    lines = cli.render("status", reply, width=80).splitlines()
    assert all(_columns_shown(line) <= 80 for line in lines), lines
    assert "山田太郎" in lines[1] and "…" in lines[1]
    # The columns after it line up on the screen.
    opened = {_columns_shown(line[: line.index("1 FAILED")]) for line in lines[1:]}
    assert len(opened) == 1, lines


@pytest.mark.parametrize("width", [80, 60, 40])
def test_one_services_notifications_fit_and_keep_whom_they_notified_whole(width: int) -> None:
    notes = [{**ONE["incident"]["notifications"][0], "last_error": "refused " * 20}]
    reply = {**ONE, "incident": {**ONE["incident"], "acknowledged_by": "alice"}}
    reply["incident"]["notifications"] = notes
    lines = cli.render("status", reply, width=width, today="2027-01-15").splitlines()
    assert all(len(line) <= width for line in lines), lines
    assert lines[-1].split()[0] == "email:a@example.com" and lines[-1].endswith("…")


def test_on_a_node_of_a_cluster_the_table_says_which_node_owns_each_service() -> None:
    owned = {"node": "n2", "shard": 7, "epoch": 3}
    unowned = {"node": None, "shard": 9, "epoch": None}
    reply = {
        "services": [
            {**_status("api", acknowledged=False, acknowledged_by=None), "owner": owned},
            {**_status("web", healthy=True), "owner": unowned},
        ]
    }
    header, api, web = cli.render("status", reply).splitlines()
    assert header.split()[-1] == "OWNER"
    assert api.split()[0] == "api" and api.split()[-1] == "n2"
    assert web.split()[0] == "web" and web.split()[-1] == "none"  # a failover under way
    one = cli.render("status", {**_status("api", healthy=True), "owner": owned})
    assert one.splitlines()[0].split()[-1] == "OWNER" and one.splitlines()[1].endswith("n2")
    # A single node's statuses have no owner: the table is as it always was.
    assert "OWNER" not in cli.render("status", _many())
    # Narrow: it goes after the alerts, level and opening time, before what is acted on.
    headers = [cli.render("status", reply, width=w).splitlines()[0].split() for w in range(30, 130)]
    assert any("OWNER" not in h for h in headers) and any("OWNER" in h for h in headers)
    for shown in headers:
        assert "SERVICE" in shown and "INCIDENT" in shown
        if "OWNER" not in shown:
            assert not {"ALERTS", "LEVEL", "OPENED"} & set(shown), shown


def test_on_a_node_of_a_cluster_status_heads_the_table_with_the_node_and_names_an_owner() -> None:
    cluster = {
        "node": "pagerd-1", "shards_owned": 86, "lease_renewal_age": 1.204, "epoch_max": 3,
        "epochs": {}, "lease_ttl": 10.0, "adopted_undelivered": 0,
        "nodes": ["pagerd-2", "pagerd-3"], "round_error": None,
    }  # fmt: skip
    owned = {"node": "pagerd-2", "shard": 17, "epoch": 1}
    reply = {"services": [{**_status("api", healthy=True), "owner": owned}], "cluster": cluster}
    first, blank, header, row = cli.render("status", reply).splitlines()
    assert first == (
        "node pagerd-1: owns 86 shard(s), epoch up to 3, leases renewed 1.2s ago;"
        " other nodes alive: pagerd-2, pagerd-3"
    )
    assert blank == "" and header.split()[0] == "SERVICE" and row.split()[-1] == "pagerd-2"
    alone = {**cluster, "shards_owned": 0, "lease_renewal_age": None, "nodes": []}
    shown = cli.render("status", {**reply, "cluster": alone}).splitlines()[0]
    assert shown == "node pagerd-1: owns no shard; no other node alive"
    differ = {
        **cluster,
        "config_agreed": False,
        "configs": {"pagerd-1": "3f2a", "pagerd-2": "9c41"},
    }
    lines = cli.render("status", {**reply, "cluster": differ}).splitlines()
    assert lines[1] == "the nodes run different configs: pagerd-1=3f2a, pagerd-2=9c41"
    # One service: its owner in words, under the table (the OWNER column may not fit).
    one = cli.render("status", {**_status("api", healthy=True), "owner": owned}, width=30)
    assert one.splitlines()[-1] == "owner: pagerd-2 (shard 17, epoch 1)"
    none = {"node": None, "shard": 9, "epoch": None}
    one = cli.render("status", {**_status("api", healthy=True), "owner": none})
    assert one.splitlines()[-1] == "owner: none (no node holds shard 9: a failover under way)"
    assert "owner:" not in cli.render("status", _status("api", healthy=True))
