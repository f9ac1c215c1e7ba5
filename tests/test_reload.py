"""Reload: a config that `--check` accepts is one the daemon can run, and a reload that cannot be
applied, whatever the reason, leaves the old config running."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd import app
from pagerd.config import ConfigError, load
from pagerd.main import main
from tests.harness import CHANNELS, ONCALL, connect, running, write_config

DAY = 86400

WEBHOOK = """
[channels.webhook]
transport = "webhook"
ca_file = "ca.pem"
"""

NOT_PEM = "-----BEGIN CERTIFICATE-----\nthis is not base64 of a certificate\n"


def _with_bad_ca(folder: Path) -> str:
    (folder / "ca.pem").write_text(NOT_PEM)
    return CHANNELS + WEBHOOK + ONCALL + '\n[services.api]\npolicy = "oncall"\n'


def test_check_builds_the_tls_context_a_ca_file_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(_with_bad_ca(tmp_path))
    assert main(["--config", str(path), "--check"]) == 78
    err = capsys.readouterr().err
    assert "channels.webhook.ca_file: " in err and "not a usable CA certificate file" in err
    with pytest.raises(ConfigError):
        load(path)


def test_starting_on_a_bad_ca_file_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(_with_bad_ca(tmp_path))
    assert main(["--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "channels.webhook.ca_file" in err


async def test_a_reload_with_a_bad_ca_file_keeps_the_old_config(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            config.path.write_text(_with_bad_ca(tmp_path))
            assert await daemon.reload() is False
            web = await conn.request("alert", service="web")  # web is gone from the new file
    assert web["ok"] is True
    assert daemon.config.channels.keys() == {"email", "sms"}


async def test_a_reload_that_fails_for_any_reason_keeps_the_old_config(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever the check did not foresee (here: building a channel raises) is contained."""

    def broken(*args: object, **kwargs: object) -> object:
        raise ssl.SSLError(336245135, "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate")

    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            config.path.write_text(config.path.read_text().replace("web", "www"))
            monkeypatch.setattr(app, "build_lanes", broken)
            errors = await daemon.try_reload()
            monkeypatch.undo()
            web = await conn.request("alert", service="web")
            assert await daemon.reload() is True  # and a later good reload still applies
            www = await conn.request("alert", service="www")
    assert errors and "SSLError" in errors[0]
    assert web["ok"] is True and www["ok"] is True
    assert "reload failed, still running the previous config" in caplog.text


async def test_a_reload_naming_an_unknown_user_is_rejected(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            typo = config.path.read_text().replace(
                'state_dir = "state"', 'state_dir = "state"\nallow_users = ["nagois"]'
            )
            config.path.write_text(typo)
            errors = await daemon.try_reload()
    assert errors == ["daemon.allow_users[0]: no user named 'nagois' on this system"]
    assert not daemon.config.access.restricted
