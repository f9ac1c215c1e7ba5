"""Start-up failures: each names its cause in one line, whatever layer of Trio it comes through,
and exits 1 ("cannot start") rather than printing a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pagerd import app
from pagerd.config import Config, load
from pagerd.main import main
from pagerd.operations import logs
from tests.processes import CONFIG, PAGERD


def _start(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PAGERD, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_metrics_port_in_use_is_one_line_that_names_it(tmp_path: Path, level: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "pager.toml"
        config.write_text(CONFIG + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        result = _start(config, "--log-level", level)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert f"cannot start: cannot serve metrics on 127.0.0.1:{port}: " in errors[0]
    assert "in use" in errors[0]
    assert "sub-exception" not in result.stderr
    assert ("Traceback" in result.stderr) == (level == "debug"), result.stderr
    assert not (tmp_path / "run" / "pager.sock").exists()  # what it bound is cleaned up


def test_an_unforeseen_start_up_error_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("nothing foresaw this\nsecond line")

    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    monkeypatch.setattr(app, "build_lanes", broken)
    configure = logs.configure
    monkeypatch.setattr(logs, "configure", lambda level: configure(level, sys.stderr))
    assert main(["--config", str(config)]) == 1
    err = capsys.readouterr().err
    (line,) = err.splitlines()  # the traceback only at debug level
    assert line.endswith(
        "ERROR pagerd: cannot start: cannot set up the channels: ValueError: nothing foresaw this"
    )


def test_a_state_dir_that_is_a_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    (tmp_path / "state").write_text("not a folder")
    assert main(["--config", str(config), "--check"]) == 78
    assert "daemon.state_dir: " in capsys.readouterr().err
    # At start (the file appeared after the check):
    (tmp_path / "state").unlink()
    loaded = load(config)
    (tmp_path / "state").write_text("not a folder")
    failed = trio.run(_serve_fails, loaded)
    assert "is a file (daemon.state_dir must name a folder)" in failed
    assert "File exists" not in failed


async def _serve_fails(config: Config) -> str:
    with pytest.raises(app.StartupError) as excinfo:
        await app.serve(config, trio.Event())
    return str(excinfo.value)


async def test_a_socket_folder_that_is_a_file_says_so(tmp_path: Path) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    loaded = load(
        config
    )  # the check says so too (tests/test_check_all_errors.py): it appeared after
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(app.StartupError) as excinfo:
        await app.serve(loaded, trio.Event())
    assert str(excinfo.value) == (
        f"cannot listen on {tmp_path}/run/pager.sock: a folder on its path is a file"
    )
