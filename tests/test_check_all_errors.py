"""`pagerd --check` reports every independent error in one pass, and what start would refuse."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pagerd.main import main
from tests.harness import errors_of

CHANNEL = """
[channels.email]
transport = "smtp"
host = "smtp.example.com"
sender = "pager@example.com"
"""

SERVICE = """
[services.api]
policy = "p"
"""


def test_every_error_of_a_policy_shows_at_once(tmp_path: Path) -> None:
    policy = """
[policies.p]
repeat = -1
levels = [{ targets = ["pigeon:x", "sms:+14155550100"] }, { targets = [] }]
"""
    assert errors_of(tmp_path, CHANNEL + policy + SERVICE) == [
        "policies.p.levels[0].targets[0]: unknown channel 'pigeon' "
        "(expected one of email, sms, slack, webhook, person, schedule)",
        "policies.p.repeat: must be 0 or more",
        "policies.p.levels[0].targets[1]: channel 'sms' is not configured "
        "(add a [channels.sms] section)",
        "policies.p.levels[1].targets: a level needs at least one target",
    ]


def test_a_policy_whose_levels_cannot_be_read_has_that_error_alone(tmp_path: Path) -> None:
    policy = '\n[policies.p]\nrepeat = "often"\nlevels = "all"\n'
    assert errors_of(tmp_path, CHANNEL + policy + SERVICE) == [
        "policies.p.levels: expected an array, got a string",
        "policies.p.repeat: expected an integer, got a string",
    ]


def test_every_error_of_a_channel_shows_at_once(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    channel = CHANNEL + 'username = "pager"\npassword_file = "missing"\nca_file = "ca.pem"\n'
    policy = '\n[policies.p]\nlevels = [{ targets = ["email:ops@example.com"] }]\n'
    errors = errors_of(tmp_path, channel + policy + SERVICE)
    assert [e.split(":")[0] for e in errors] == [
        "channels.email.password_file",
        "channels.email.ca_file",
    ], errors
    assert "is not a usable CA certificate file (PEM)" in errors[1]


GOOD = (
    '[daemon]\nsocket = "run/pager.sock"\nstate_dir = "state"\n'
    + CHANNEL
    + '\n[policies.p]\nlevels = [{ targets = ["email:ops@example.com"] }]\n'
    + SERVICE
)


def test_check_refuses_a_socket_folder_that_is_a_file_as_start_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(GOOD)
    (tmp_path / "run").write_text("not a folder")
    assert main(["--check", "--config", str(config)]) == 78
    assert f"daemon.socket: {tmp_path}/run exists and is not a folder" in capsys.readouterr().err


def test_check_refuses_a_socket_path_that_is_not_a_socket_and_accepts_one_that_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(GOOD)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "pager.sock").write_text("a file pagerd will not replace")
    assert main(["--check", "--config", str(config)]) == 78
    assert "exists and is not a socket" in capsys.readouterr().err
    (tmp_path / "run" / "pager.sock").unlink()
    with socket.socket(socket.AF_UNIX) as sock:  # a running (or stale) daemon's: fine
        sock.bind(str(tmp_path / "run" / "pager.sock"))
        assert main(["--check", "--config", str(config)]) == 0


@pytest.mark.parametrize(
    ("setting", "file", "error"),
    [
        ('state_dir = "var/state"', "var", "daemon.state_dir: {}/var exists and is not a folder"),
        (
            '[channels.log]\npath = "logs/sent.jsonl"',
            "logs",
            "channels.log.path: {}/logs exists and is not a folder",
        ),
    ],
    ids=["state_dir-under-a-file", "log-folder-is-a-file"],
)
def test_check_refuses_a_file_where_pagerd_makes_a_folder(
    tmp_path: Path, setting: str, file: str, error: str
) -> None:
    text = GOOD.replace('state_dir = "state"', setting) if "state_dir" in setting else GOOD
    if "channels.log" in setting:
        text += "\n" + setting + "\n"
    (tmp_path / file).write_text("a file")
    assert errors_of(tmp_path, text) == [error.format(tmp_path)]
