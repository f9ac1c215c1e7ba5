"""Reload: a config that `--check` accepts is one the daemon can run, and a reload that cannot be
applied, whatever the reason, leaves the old config running."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from pager.timefmt import isoformat
from pagerd import app
from pagerd.config import ConfigError, load
from pagerd.main import main
from tests.harness import CHANNELS, ONCALL, T0, connect, metric_samples, running, write_config
from tests.processes import Pagerd, pager

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


async def test_reload_over_the_socket_reports_its_outcome_everywhere(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """`reload` answers with the errors or ok; ping, status and the metrics say which config
    runs, since when, and whether the last reload took."""
    config = write_config(tmp_path)
    first = hashlib.sha256(config.path.read_bytes()).hexdigest()[:12]
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            ping = await conn.request("ping")
            status = await conn.request("status")
            one = await conn.request("status", service="api")
            started = metric_samples((await conn.request("metrics"))["text"])
            await trio.sleep(60)
            good = config.path.read_text()
            config.path.write_text(good.replace('"sms:+14155550100"', '"sms:1"'))
            rejected = await conn.request("reload")
            after_rejected = await conn.request("ping")
            failed = metric_samples((await conn.request("metrics"))["text"])
            await trio.sleep(60)
            config.path.write_text(good + "\n# edited\n")
            second = hashlib.sha256(config.path.read_bytes()).hexdigest()[:12]
            applied = await conn.request("reload")
            reloaded = metric_samples((await conn.request("metrics"))["text"])
            pong = await conn.request("ping")
    assert ping["pong"] is True and "version" in ping  # the fields that were there stay
    assert ping["config"] == {"sha256": first, "loaded_at": isoformat(T0), "last_reload": None}
    assert status["config"] == ping["config"]
    assert set(one) == {"ok", "service", "state", "incident"}  # a service's status, as it was
    assert started["pagerd_config_last_reload_successful"] == 1
    assert started["pagerd_config_last_reload_success_timestamp_seconds"] == T0
    assert rejected["ok"] is False and rejected["error"]["code"] == "invalid_config"
    assert rejected["error"]["errors"] == [
        "policies.oncall.levels[0].targets[1]: not an E.164 phone number"
    ]
    assert after_rejected["config"]["sha256"] == first
    assert after_rejected["config"]["last_reload"] == {"at": isoformat(T0 + 60), "ok": False}
    assert failed["pagerd_config_last_reload_successful"] == 0
    assert failed["pagerd_config_last_reload_success_timestamp_seconds"] == T0
    assert applied["ok"] is True and applied["config"]["sha256"] == second
    assert pong["config"]["loaded_at"] == isoformat(T0 + 120)
    assert pong["config"]["last_reload"] == {"at": isoformat(T0 + 120), "ok": True}
    assert reloaded["pagerd_config_last_reload_successful"] == 1
    assert reloaded["pagerd_config_last_reload_success_timestamp_seconds"] == T0 + 120


async def test_sighup_and_the_reload_op_take_turns(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            results: list[list[str]] = []

            async def reload() -> None:
                results.append(await daemon.try_reload())

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(reload)
    assert results == [[], [], []]


def test_pager_reload_prints_the_errors_or_exits_0(daemon: Pagerd) -> None:
    daemon.start()
    good = daemon.config.read_text()
    daemon.config.write_text(good.replace("[services.web]", "[services.web]\nowner = 'me'"))
    rejected = pager(daemon.socket, "reload")
    assert rejected.returncode == 1
    assert "invalid_config" in rejected.stderr
    assert "  services.web.owner: unknown key" in rejected.stderr.splitlines()
    daemon.config.write_text(good)
    applied = pager(daemon.socket, "reload")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("pagerd reloaded its config (sha256 ")
    assert pager(daemon.socket, "--json", "ping").returncode == 0


async def test_a_reload_whose_check_itself_fails_keeps_the_old_config(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            monkeypatch.setattr(app, "load", broken)
            errors = await daemon.try_reload()
            web = await conn.request("alert", service="web")
    assert errors == [
        f"cannot load {config.path}: RecursionError: maximum recursion depth exceeded"
    ]
    assert web["ok"] is True


def test_check_whose_check_itself_fails_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pagerd import main as main_module

    def broken(path: Path) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(main_module, "load", broken)
    path = tmp_path / "pager.toml"
    assert main(["--config", str(path), "--check"]) == 78
    err = capsys.readouterr().err
    assert (
        err
        == f"pagerd: cannot load config {path}: RecursionError: maximum recursion depth exceeded\n"
    )


async def test_what_a_reload_cannot_change_is_said_in_its_reply_until_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The file asks for a listener, workers and TLS that only a start makes: the reload
    applies the rest, and says, key by key, what waits for a restart; the running config keeps
    what runs, so the same file reloaded again says so again, and the file as it was says
    nothing."""
    config = write_config(tmp_path)
    good = config.path.read_text()
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    changed = (
        good
        + '\n[metrics]\nlisten = "127.0.0.1:9464"\n[delivery]\nworkers = 3\n'
        + '[http]\nlisten = "127.0.0.1:0"\nworkers = 2\n'
        + 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n'
    )
    async with running(config) as daemon:
        config.path.write_text(changed)
        errors, notes = await daemon.reload_noted()
        assert errors == []
        assert notes == [
            "metrics.listen changed; it takes effect on restart",
            "http.listen changed; it takes effect on restart",
            "http.workers changed; it takes effect on restart",
            "delivery.workers changed; it takes effect on restart",
            "TLS turned on (http.tls_cert, http.tls_key); it takes effect on restart",
        ]
        assert daemon.config.http.listen == () and daemon.config.metrics_listen is None
        assert await daemon.reload_noted() == ([], notes)  # still not in effect
        async with connect(config.socket) as conn:
            reply = await conn.request("reload")
        assert reply["ok"] and reply["notes"] == notes
        config.path.write_text(good)
        assert await daemon.reload_noted() == ([], [])
    assert set(app.RESTART_ONLY) >= {note.split()[0] for note in notes[:-1]}


def test_pager_reload_prints_what_takes_effect_on_restart(daemon: Pagerd) -> None:
    daemon.start()
    good = daemon.config.read_text()
    daemon.config.write_text(good + "\n[delivery]\nworkers = 3\n")
    applied = pager(daemon.socket, "reload")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[1:] == [
        "  delivery.workers changed; it takes effect on restart"
    ]
    assert "not applied until pagerd restarts" in applied.stdout.splitlines()[0]
    shown = json.loads(pager(daemon.socket, "--json", "reload").stdout)
    assert shown["notes"] == ["delivery.workers changed; it takes effect on restart"]
    daemon.config.write_text(good)
    assert json.loads(pager(daemon.socket, "--json", "reload").stdout)["notes"] == []
    assert pager(daemon.socket, "reload").stdout.strip().endswith(")")
