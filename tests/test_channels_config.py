"""`[channels.*]`: each transport's settings, defaults, secrets, and every error by key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagerd.config import ConfigError, load
from pagerd.config.channels import Secret, SmtpSettings, TwilioSettings, WebhookSettings

POLICY = """
[policies.p]
[[policies.p.levels]]
targets = ["email:a@example.com", "sms:+14155550100",
           "slack:https://hooks.slack.com/services/T0/B0/SECRETPATH", "webhook:https://example.com/h"]
[services.s]
policy = "p"
"""

CHANNELS = """
[channels.email]
transport = "smtp"
host = "smtp.example.com"
sender = "pager@example.com"
username = "pager"
password_file = "smtp-password"
timeout = "5s"
rate_limit = "30/m"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_credential = "twilio-token"
messaging_service_sid = "MG123"
[channels.slack]
transport = "slack"
[channels.webhook]
transport = "webhook"
headers = { "X-Team" = "payments" }
secret_file = "hook-secret"
max_attempts = 3
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "smtp-password").write_text("smtp-s3cret\n")
    (tmp_path / "hook-secret").write_text("hmac-s3cret")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "twilio-token").write_text("twilio-s3cret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    return tmp_path


def load_text(folder: Path, text: str) -> object:
    path = folder / "pager.toml"
    path.write_text(text)
    return load(path)


def errors(folder: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        load_text(folder, text)
    return excinfo.value.errors


def test_every_transport_with_its_settings_and_secrets(folder: Path) -> None:
    config = load_text(folder, CHANNELS + POLICY)
    channels = config.channels  # type: ignore[attr-defined]
    email = channels["email"]
    assert email.settings == SmtpSettings(
        host="smtp.example.com",
        port=587,  # the default of starttls, the default security
        sender="pager@example.com",
        security="starttls",
        username="pager",
        password=Secret("smtp-s3cret"),
    )
    assert (email.timeout, email.rate) == (5.0, 0.5)
    sms = channels["sms"]
    assert isinstance(sms.settings, TwilioSettings)
    assert sms.settings.auth_token == Secret("twilio-s3cret")
    assert sms.settings.api_base == "https://api.twilio.com"
    assert (sms.rate, sms.burst) == (1.0, 5)  # defaults kind to a Twilio account
    webhook = channels["webhook"]
    assert webhook.settings == WebhookSettings({"X-Team": "payments"}, Secret("hmac-s3cret"))
    assert webhook.max_attempts == 3


def test_secrets_never_show_in_reprs(folder: Path) -> None:
    config = load_text(folder, CHANNELS + POLICY)
    shown = repr(config)
    for secret in ("smtp-s3cret", "twilio-s3cret", "hmac-s3cret", "SECRETPATH"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('host = "smtp.example.com"\n', "", "channels.email.host: required key missing"),
        ('transport = "smtp"', 'transport = "sendmail"', "channels.email.transport: unknown"),
        (
            'sender = "pager@example.com"',
            'sender = "pager@example.com"\nsecurity = "ssl"',
            "channels.email.security: expected 'none', 'starttls' or 'tls'",
        ),
        (
            'timeout = "5s"',
            'timeout = "5s"\naccount_sid = "AC1"',
            "channels.email.account_sid: not a setting of transport 'smtp'",
        ),
        ('rate_limit = "30/m"', 'rate_limit = "fast"', "channels.email.rate_limit: not a rate"),
        (
            'password_file = "smtp-password"',
            'password_file = "missing"',
            "channels.email.password_file: cannot read",
        ),
        (
            'username = "pager"\n',
            "",
            "channels.email.username: a username and a password go together",
        ),
        (
            'messaging_service_sid = "MG123"',
            'messaging_service_sid = "MG123"\nsender = "+14155550199"',
            "channels.sms.sender: give exactly one of sender or messaging_service_sid",
        ),
        (
            'auth_token_credential = "twilio-token"',
            'auth_token_credential = "nope"',
            "channels.sms.auth_token_credential: cannot read",
        ),
        (
            'auth_token_credential = "twilio-token"\n',
            "",
            "channels.sms.auth_token_file: required",
        ),
        (
            "max_attempts = 3",
            "max_attempts = 0",
            "channels.webhook.max_attempts: must be 1 or more",
        ),
        ('transport = "slack"', 'transport = "slack"\nport = 25', "channels.slack.port: not a"),
        (
            '"webhook:https://example.com/h"',
            '"webhook:ftp://example.com/h"',
            "policies.p.levels[0].targets[3]: not an http:// or https:// URL",
        ),
    ],
)
def test_channel_errors_name_their_key(folder: Path, old: str, new: str, error: str) -> None:
    text = CHANNELS + POLICY
    assert old in text
    found = errors(folder, text.replace(old, new, 1))
    assert any(e.startswith(error) for e in found), found


def test_credentials_need_systemd(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    found = errors(folder, CHANNELS + POLICY)
    assert found == [
        "channels.sms.auth_token_credential: $CREDENTIALS_DIRECTORY is not set "
        "(run under systemd with LoadCredential=, or check with: pagerd --check --credentials DIR)"
    ]


def test_errors_never_contain_secrets(folder: Path) -> None:
    text = (CHANNELS + POLICY).replace('host = "smtp.example.com"\n', "")
    found = "\n".join(errors(folder, text))
    for secret in ("smtp-s3cret", "twilio-s3cret", "hmac-s3cret", "SECRETPATH"):
        assert secret not in found


def test_log_transport_takes_no_provider_settings(folder: Path) -> None:
    text = """
[channels.email]
transport = "log"
host = "x"
[policies.p]
[[policies.p.levels]]
targets = ["email:a@example.com"]
[services.api]
policy = "p"
"""
    assert errors(folder, text) == ["channels.email.host: not a setting of transport 'log'"]


def test_bundled_production_config_is_valid_with_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("smtp-password", "twilio-token"):
        (tmp_path / name).write_text("x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = load(Path(__file__).parent.parent / "config" / "pager.toml")
    assert set(config.channels) == {"email", "sms"}
