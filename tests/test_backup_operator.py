"""`pagerd backup` and `restore` as an operator runs them: from a timer as pagerd's user, on
the production config, outside systemd; and a restore never destroys a database it saved."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pagerd.main import main
from pagerd.storage.sqlite.store import Store
from tests.history import incident

PRODUCTION = """\
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[channels.email]
transport = "smtp"
host = "smtp.example.com"
sender = "pager@example.com"
username = "pager"
password_credential = "smtp-password"

[policies.oncall]
levels = [{ targets = ["email:ops@example.com"] }]

[services.api]
policy = "oncall"
"""


def incidents(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [n for (n,) in conn.execute("SELECT number FROM incidents ORDER BY 1")]


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose secret is a systemd credential, read where systemd is not."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "pager.toml"
    path.write_text(PRODUCTION)
    with closing(Store.open(tmp_path / "state" / "pager.db")) as store:
        incident(store, "api", 1, closed_at=1.0)
    return path


def test_backup_and_restore_read_the_state_dir_alone_not_the_channels_secrets(
    production: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", "--config", str(production)]) == 78  # the whole config needs it
    assert "password_credential" in capsys.readouterr().err
    dest = tmp_path / "backup.db"
    assert main(["backup", "--config", str(production), str(dest)]) == 0, capsys.readouterr()
    assert incidents(dest) == [1]
    assert main(["restore", "--config", str(production), str(dest)]) == 0, capsys.readouterr()
    assert incidents(tmp_path / "state" / "pager.db") == [1]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("[daemon\n", "invalid TOML"),
        ("[daemon]\nstate_dir = 3\n", "daemon.state_dir: expected a string"),
        ("daemon = 1\n", "daemon: expected a table"),
    ],
)
def test_backup_still_refuses_a_config_that_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, says: str
) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(content)
    assert main(["backup", "--config", str(config), str(tmp_path / "b.db")]) == 78
    assert main(["restore", "--config", str(config), str(tmp_path / "b.db")]) == 78
    err = capsys.readouterr().err
    assert f"invalid config {config}" in err and says in err
    assert not (tmp_path / "b.db").exists()


def test_a_second_restore_never_overwrites_the_database_the_first_one_saved(
    production: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    backup_file = tmp_path / "backup.db"
    with closing(Store.open(tmp_path / "other.db")) as store:
        incident(store, "api", 7, closed_at=7.0)
    assert main(["backup", "--database", str(tmp_path / "other.db"), str(backup_file)]) == 0
    capsys.readouterr()
    saved: list[Path] = []
    for _ in range(3):
        assert main(["restore", "--config", str(production), str(backup_file)]) == 0
        out = capsys.readouterr().out
        found = re.search(r"the database it replaced is (\S+)", out)
        assert found is not None, out
        saved.append(Path(found.group(1)))
    assert len(set(saved)) == 3
    assert all(p.parent == state and p.exists() for p in saved)
    assert re.fullmatch(r"pager\.db\.before-restore\.\d{8}T\d{6}Z(\.\d+)?", saved[0].name)
    assert incidents(saved[0]) == [1]  # the original, kept through later restores
    assert incidents(saved[1]) == incidents(saved[2]) == [7]
