"""`pagerd --check` on the files an operator really has: the shipped production config, which
reads its secrets from systemd credentials, checked outside systemd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.processes import PAGERD

ROOT = Path(__file__).parent.parent
PRODUCTION = ROOT / "config" / "pager.toml"


def _check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run(
        [*PAGERD, "--config", str(PRODUCTION), "--check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, **(env or {})},
    )


def _credentials(folder: Path) -> Path:
    folder.mkdir()
    (folder / "smtp-password").write_text("the SMTP password\n")
    (folder / "twilio-token").write_text("the Twilio auth token\n")
    return folder


def test_the_production_config_needs_its_credentials_to_check() -> None:
    result = _check()
    assert result.returncode == 78
    assert "--credentials DIR" in result.stderr  # the way out is named


def test_check_with_credentials_folder(tmp_path: Path) -> None:
    result = _check("--credentials", str(_credentials(tmp_path / "creds")))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"pagerd: {PRODUCTION}: ok (1 services, 1 policies)\n"
        "pagerd: note: http.public_url is not set: email pages carry no acknowledge links"
        " (see docs/answering.md)\n"
    )
    assert "the SMTP password" not in result.stdout + result.stderr


def test_check_with_credentials_directory_as_systemd_sets_it(tmp_path: Path) -> None:
    folder = _credentials(tmp_path / "creds")
    result = _check(env={"CREDENTIALS_DIRECTORY": str(folder)})
    assert result.returncode == 0, result.stderr


def test_check_names_a_missing_credential(tmp_path: Path) -> None:
    folder = _credentials(tmp_path / "creds")
    (folder / "twilio-token").unlink()
    result = _check("--credentials", str(folder))
    assert result.returncode == 78
    assert "channels.sms.auth_token_credential: cannot read" in result.stderr
    missing = _check("--credentials", str(tmp_path / "nowhere"))
    assert missing.returncode == 78 and "not a folder" in missing.stderr
