"""The config file: what loads, and every error an operator can make, named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagerd.config import load, parse_duration
from pagerd.main import main
from tests.harness import errors_of

GOOD = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[channels.email]
transport = "log"
[channels.sms]
transport = "log"
[channels.log]
path = "notifications.jsonl"

[policies.payments-oncall]
repeat = 2
[[policies.payments-oncall.levels]]
targets = ["email:alice@example.com", "sms:+14155550100"]
ack_timeout = "1h30m"
[[policies.payments-oncall.levels]]
targets = ["email:payments-lead@example.com"]

[services.payments-api]
policy = "payments-oncall"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pager.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_paths_relative_to_its_folder(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD))
    assert config.socket == tmp_path / "run/pager.sock"
    assert config.state_dir == tmp_path / "state"
    assert config.log_path == tmp_path / "notifications.jsonl"
    assert config.keep_history is None  # history is kept for ever unless configured
    kept = load(
        write(
            tmp_path, GOOD.replace("[channels.email]", 'keep_history = "90d"\n\n[channels.email]')
        )
    )
    assert kept.keep_history == 90 * 86400
    policy = config.policy_of("payments-api")
    assert policy.repeat == 2
    assert [lv.ack_timeout for lv in policy.levels] == [5400.0, 900.0]
    assert [str(t) for t in policy.levels[0].targets] == [
        "email:alice@example.com",
        "sms:+14155550100",
    ]


@pytest.mark.parametrize("name", ["pager.example.toml", "pager.container.toml"])
def test_bundled_log_transport_configs_are_valid(name: str) -> None:
    assert load(Path(__file__).parent.parent / "config" / name).services


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1m5s", 65),
        ("90d", 90 * 86400),
        ("1d12h", 129600),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "15", "15x", "m", "0s", "1.5h", "-1m", "15 m", "1s1h", "1h1d", "d"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            '"sms:+14155550100"]',
            '"sms:4155550100"]',
            "policies.payments-oncall.levels[0].targets[1]: not an E.164 phone number",
        ),
        (
            '"email:alice@example.com",',
            '"email:alice",',
            "policies.payments-oncall.levels[0].targets[0]: not an email address",
        ),
        (
            'ack_timeout = "1h30m"',
            'ack_timeout = "90 minutes"',
            "policies.payments-oncall.levels[0].ack_timeout: not a duration",
        ),
        (
            'ack_timeout = "1h30m"',
            "ack_timeout = 90",
            "policies.payments-oncall.levels[0].ack_timeout: expected a duration string",
        ),
        (
            'policy = "payments-oncall"',
            'policy = "nobody"',
            "services.payments-api.policy: no policy named 'nobody'",
        ),
        (
            'targets = ["email:payments-lead@example.com"]',
            "targets = []",
            "policies.payments-oncall.levels[1].targets: a level needs at least one target",
        ),
        (
            'targets = ["email:payments-lead@example.com"]',
            'targets = "email:payments-lead@example.com"',
            "policies.payments-oncall.levels[1].targets: expected an array, got a string",
        ),
        ("repeat = 2", 'repeat = "2"', "policies.payments-oncall.repeat: expected an integer"),
        ("repeat = 2", "repeat = -1", "policies.payments-oncall.repeat: must be 0 or more"),
        ('state_dir = "state"', 'state_dir = "state"\nsockets = 1', "daemon.sockets: unknown key"),
        (
            'state_dir = "state"',
            'state_dir = "state"\nkeep_history = "90 days"',
            "daemon.keep_history: not a duration: '90 days'",
        ),
        (
            '[services.payments-api]\npolicy = "payments-oncall"',
            '[services.payments-api]\npolicy = "payments-oncall"\nowner = "me"',
            "services.payments-api.owner: unknown key",
        ),
        (
            "[services.payments-api]",
            '[services."payments api"]',
            'services."payments api": a service name is 1 to 128 letters',
        ),
        (
            "[services.payments-api]",
            "[services." + "x" * 129 + "]",
            "services." + "x" * 129 + ": a service name is 1 to 128 letters",
        ),
        (
            '[channels.email]\ntransport = "log"',
            '[channels.email]\ntransport = "carrier-pigeon"',
            "channels.email.transport: unknown transport 'carrier-pigeon'",
        ),
        (
            '[channels.sms]\ntransport = "log"',
            "",
            "policies.payments-oncall.levels[0].targets[1]: channel 'sms' is not configured",
        ),
        (
            '[services.payments-api]\npolicy = "payments-oncall"',
            "[services.payments-api]",
            "services.payments-api.policy: required key missing",
        ),
        ("[daemon]", "daemon = 3\n[daemonx]", "daemon: expected a table"),
    ],
)
def test_each_error_names_its_key_path(tmp_path: Path, old: str, new: str, error: str) -> None:
    assert old in GOOD
    errors = errors_of(tmp_path, GOOD.replace(old, new, 1))
    assert any(e.startswith(error) for e in errors), errors


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace('"sms:+14155550100"', '"sms:1"').replace('"1h30m"', '"soon"')
    assert len(errors_of(tmp_path, text)) == 2


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, "[daemon\n")
    assert error.startswith("invalid TOML")


def test_check_exits_0_on_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(write(tmp_path, GOOD)), "--check"]) == 0
    assert "ok (1 services, 1 policies)" in capsys.readouterr().out


def test_check_exits_78_and_prints_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace('"sms:+14155550100"', '"sms:1"'))
    assert main(["--config", str(path), "--check"]) == 78
    err = capsys.readouterr().err
    assert str(path) in err
    assert "policies.payments-oncall.levels[0].targets[1]: not an E.164 phone number" in err


def test_missing_config_file_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "missing.toml"), "--check"]) == 78
    assert "cannot read" in capsys.readouterr().err


def test_daemon_refuses_to_start_on_an_invalid_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("repeat = 2", "repeat = true"))
    assert main(["--config", str(path)]) == 78


def test_independent_errors_of_every_kind_come_in_one_pass(tmp_path: Path) -> None:
    """No mistake hides another: a type error in one section still lets the references
    between sections, the names and the other sections be checked."""
    text = (
        GOOD.replace('"sms:+14155550100"', '"sms:1"')  # a bad target in a policy
        .replace('state_dir = "state"', 'state_dir = "state"\nmax_connections = 0')  # a range
        .replace('[channels.sms]\ntransport = "log"', '[channels.sms]\ntransport = "pigeon"')
        + '\n[services.web]\npolicy = "nobody"\nowner = "me"\n'  # unknown key + missing policy
        + '\n[services."bad name"]\npolicy = "payments-oncall"\n'
        + '\n[policies.broken]\nrepeat = "x"\n[[policies.broken.levels]]\n'
        + 'targets = ["email:a@example.com"]\n'
        + '\n[services.uses-broken]\npolicy = "broken"\n'
        + "\n[metricz]\nlisten = 1\n"
    )
    errors = errors_of(tmp_path, text)
    expected = [
        "metricz: unknown key",
        "channels.sms.transport: unknown transport 'pigeon'",
        "policies.payments-oncall.levels[0].targets[1]: not an E.164 phone number",
        "policies.broken.repeat: expected an integer",
        "services.web.owner: unknown key",
        "daemon.max_connections: must be 1 or more",
        'services."bad name": a service name is 1 to 128 letters',
        "services.web.policy: no policy named 'nobody'",
    ]
    for error in expected:
        assert any(e.startswith(error) for e in errors), (error, errors)
    # A policy with errors is still a policy: naming it is not a second error.
    assert not any("no policy named 'broken'" in e for e in errors), errors
    # A channel with errors is still configured: its targets are not a second error.
    assert not any("channel 'sms' is not configured" in e for e in errors), errors
    assert len(errors) == len(expected), errors


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('allow_users = ["root", "monitorng"]', "daemon.allow_users[1]: no user named 'monitorng'"),
        ('allow_groups = ["no-such-group-x"]', "daemon.allow_groups[0]: no group named"),
    ],
)
def test_allowed_users_and_groups_must_exist(tmp_path: Path, line: str, error: str) -> None:
    """A typo in an allowed name would lock that account out without a word."""
    text = GOOD.replace('state_dir = "state"', f'state_dir = "state"\n{line}')
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1 and errors[0].startswith(error), errors
    assert load(
        write(
            tmp_path,
            GOOD.replace(
                'state_dir = "state"',
                'state_dir = "state"\nallow_users = ["root"]\nallow_groups = ["root"]',
            ),
        )
    )


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('state_dir = "state"', 'state_dir = "st\\u0000ate"', "daemon.state_dir"),
        ('socket = "run/pager.sock"', 'socket = "p\\u0000"', "daemon.socket"),
        ('path = "notifications.jsonl"', 'path = "n\\u0000"', "channels.log.path"),
        (
            '[channels.sms]\ntransport = "log"',
            '[channels.sms]\ntransport = "l\\u0000g"',
            "channels.sms.transport",
        ),
    ],
)
def test_a_nul_in_a_string_is_an_error_not_a_crash(
    tmp_path: Path, old: str, new: str, error: str
) -> None:
    """As a path it would fail only when used, with a traceback (`embedded null byte`)."""
    assert old in GOOD
    errors = errors_of(tmp_path, GOOD.replace(old, new))
    assert f"{error}: must not contain a NUL character" in errors, errors


def test_a_nul_in_a_channel_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    text = (
        GOOD
        + '[channels.webhook]\ntransport = "webhook"\n'
        + 'secret_file = "s\\u0000"\nca_file = "c\\u0000"\n'
    )
    errors = errors_of(tmp_path, text)
    assert "channels.webhook.secret_file: must not contain a NUL character" in errors, errors
    assert "channels.webhook.ca_file: must not contain a NUL character" in errors, errors


def test_webhook_headers_http_cannot_carry_are_errors(tmp_path: Path) -> None:
    """They passed the check, then failed every send of the channel."""
    text = (
        GOOD
        + '[channels.webhook]\ntransport = "webhook"\n'
        + '[channels.webhook.headers]\n"X Team" = "a"\nX-Name = "café"\n'
        + 'X-Two = "a\\nb"\nX-Ok = "fine"\n'
    )
    assert errors_of(tmp_path, text) == [
        'channels.webhook.headers."X Team": not a valid HTTP header name',
        "channels.webhook.headers.X-Name: a header value is printable ASCII, on one line",
        "channels.webhook.headers.X-Two: a header value is printable ASCII, on one line",
    ]


def test_a_log_path_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notifications.jsonl").mkdir()
    (error,) = errors_of(tmp_path, GOOD)
    assert error == f"channels.log.path: {tmp_path}/notifications.jsonl is a folder, not a file"


def test_a_socket_path_too_long_for_a_unix_socket_is_an_error(tmp_path: Path) -> None:
    """It passed the check, then failed the start ("AF_UNIX path too long")."""
    text = GOOD.replace('socket = "run/pager.sock"', f'socket = "/run/{"s" * 110}.sock"')
    (error,) = errors_of(tmp_path, text)
    assert error == "daemon.socket: 120 bytes long; a Unix socket's path holds at most 107"
