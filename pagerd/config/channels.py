"""Channel settings: how each channel (email, sms, slack, webhook) is delivered, validated.

`[channels.NAME]` in the config picks a transport and its settings. Secrets (passwords, tokens,
signing keys) are read from files or systemd credentials, never written in the config itself, and
never shown: `Secret` has no readable repr.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeAlias

import attrs
import httpx

from pager.domain import SLACK_APP, Target
from pager.domain import url_problem as domain_url_problem
from pagerd.config.durations import Duration

TRANSPORTS: Final[dict[str, tuple[str, ...]]] = {
    "email": ("log", "smtp"),
    "sms": ("log", "twilio"),
    "slack": ("log", "slack"),
    "webhook": ("log", "webhook"),
}

# (concurrency, messages per second, burst): a storm must not get the account banned.
_DEFAULTS: Final[dict[str, tuple[int, float, int]]] = {
    "email": (4, 10.0, 20),
    "sms": (4, 1.0, 5),
    "slack": (4, 1.0, 5),
    "webhook": (8, 10.0, 20),
}
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_MAX_ATTEMPTS: Final = 20
# With `retry_max` at its default of 5m, a thousand attempts retry for three and a half days:
# more helps nobody, and a bound keeps every count of attempts small.
MAX_ATTEMPTS: Final = 1000
# Each unit of concurrency is a task (for SMTP, a thread): a typo of a million is no setting.
MAX_CONCURRENCY: Final = 256
MAX_BURST: Final = 10_000
RETRY_INITIAL: Final = 1.0
RETRY_MAX: Final = 300.0
TWILIO_API: Final = "https://api.twilio.com"
SLACK_API: Final = "https://slack.com/api"
SMTP_PORTS: Final = {"none": 25, "starttls": 587, "tls": 465}

# Keys every channel takes, and those of each transport.
COMMON_KEYS: Final = frozenset(
    {
        "transport",
        "timeout",
        "concurrency",
        "rate_limit",
        "burst",
        "max_attempts",
        "retry_initial",
        "retry_max",
    }
)
TRANSPORT_KEYS: Final[dict[str, frozenset[str]]] = {
    "log": frozenset(),
    "smtp": frozenset(
        {
            "host",
            "port",
            "sender",
            "security",
            "username",
            "password_file",
            "password_credential",
            "ca_file",
        }
    ),
    "twilio": frozenset(
        {
            "account_sid",
            "auth_token_file",
            "auth_token_credential",
            "sender",
            "messaging_service_sid",
            "api_base",
            "ca_file",
        }
    ),
    "slack": frozenset(
        {
            "ca_file",
            "bot_token_file",
            "bot_token_credential",
            "signing_secret_file",
            "signing_secret_credential",
            "channel",
            "api_base",
        }
    ),
    "webhook": frozenset({"headers", "secret_file", "secret_credential", "ca_file"}),
}


@attrs.frozen(repr=False)
class Secret:
    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@attrs.frozen
class SmtpSettings:
    host: str
    port: int
    sender: str
    security: str  # "none" | "starttls" | "tls"
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None


@attrs.frozen
class TwilioSettings:
    account_sid: str
    auth_token: Secret
    sender: str | None = None
    messaging_service_sid: str | None = None
    api_base: str = TWILIO_API
    ca_file: Path | None = None


@attrs.frozen
class SlackSettings:
    ca_file: Path | None = None
    bot_token: Secret | None = None
    """A Slack app's bot token (`xoxb-...`): pages to the target `slack:app` go to `channel`
    through `chat.postMessage`. None: incoming webhooks only (the target is the hook's URL)."""
    signing_secret: Secret | None = None
    """The app's signing secret: what `X-Slack-Signature` of a button's click is checked with.
    None: buttons are not shown (nobody could answer them)."""
    channel: str | None = None
    api_base: str = SLACK_API


@attrs.frozen
class WebhookSettings:
    headers: dict[str, str] = attrs.Factory(dict)
    secret: Secret | None = None
    ca_file: Path | None = None


Settings: TypeAlias = SmtpSettings | TwilioSettings | SlackSettings | WebhookSettings | None


@attrs.frozen
class Channel:
    name: str
    transport: str
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = 4
    rate: float = 10.0  # messages a second, on average
    burst: int = 20  # messages at once after a quiet spell
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_initial: float = RETRY_INITIAL
    retry_max: float = RETRY_MAX
    settings: Settings = None


def log_channel(name: str) -> Channel:
    """A channel delivered by the `log` transport: one writer batches every line, no limits."""
    return Channel(name, "log", timeout=math.inf, concurrency=64, rate=math.inf, burst=1)


def unconfigured_channel(name: str) -> Channel:
    """A channel absent from the config: what is still queued for it fails at once."""
    return Channel(name, "unconfigured", timeout=math.inf, concurrency=1, rate=math.inf, burst=1)


_SLACK_CHANNEL_RE: Final = re.compile(r"#[a-z0-9_-][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{2,30}")
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_RE: Final = re.compile(r"[\x20-\x7e\t]*")


def url_problem(url: str) -> str | None:
    """Why an http(s) URL that looks right cannot be sent to, if it cannot: its host must be a
    valid (IDNA-encodable) name or address, its port (if given) 1 to 65535. The reason never
    quotes the URL, which may be a secret."""
    if (problem := domain_url_problem(url)) is not None:
        return problem
    try:
        host = httpx.URL(url).host
        host.encode("idna")
    except (httpx.InvalidURL, UnicodeError):
        return "not a usable URL: its host is not a valid host name"
    return None


def host_problem(host: str) -> str | None:
    try:
        host.encode("idna")
    except UnicodeError:
        return "not a valid host name"
    return None


def target_problem(target: Target) -> str | None:
    """Why a target that parses cannot be delivered to, if it cannot: refused at `--check`
    rather than retried for hours. (A non-ASCII email address is usable: it goes as SMTPUTF8.)"""
    if target.channel == "slack" and target.address == SLACK_APP:
        return None
    if target.channel in ("slack", "webhook"):
        return url_problem(target.address)
    if target.channel == "email":
        return host_problem(target.address.rpartition("@")[2])
    return None


_RATE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)/(s|m|h)")


def parse_rate(text: str) -> float:
    """`10/s`, `30/m`, `100/h` -> messages a second."""
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (examples: 10/s, 30/m, 100/h)")
    per = {"s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    rate = float(match.group(1)) / per
    if rate <= 0:
        raise ValueError("a rate must be more than zero")
    return rate


def read_secret(
    key: str,
    from_file: str | None,
    credential: str | None,
    base: Path,
    environ: Mapping[str, str],
    error: Callable[[str, str], None],
) -> Secret | None:
    """The secret `KEY_file` (a path from `base`) or `KEY_credential` (a systemd credential)
    names, without the whitespace around it (a file's trailing newline is not part of it); None
    if neither is given or it cannot be read, each problem told to `error(key, message)`."""
    if from_file is not None and credential is not None:
        error(f"{key}_file", f"give {key}_file or {key}_credential, not both")
        return None
    if from_file is not None:
        path, where = base / from_file, f"{key}_file"
    elif credential is not None:
        folder = environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            error(
                f"{key}_credential",
                "$CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=, "
                "or check with: pagerd --check --credentials DIR)",
            )
            return None
        path, where = Path(folder) / credential, f"{key}_credential"
    else:
        return None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        error(where, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
        return None
    if not value:
        error(where, f"{path} is empty")
        return None
    return Secret(value)


@attrs.frozen
class ChannelSection:
    """`[channels.NAME]` as written; which keys apply depends on the transport."""

    transport: str
    timeout: Duration | None = None
    concurrency: int | None = None
    rate_limit: str | None = None
    burst: int | None = None
    max_attempts: int | None = None
    retry_initial: Duration | None = None
    retry_max: Duration | None = None
    host: str | None = None
    port: int | None = None
    sender: str | None = None
    security: str | None = None
    username: str | None = None
    password_file: str | None = None
    password_credential: str | None = None
    ca_file: str | None = None
    account_sid: str | None = None
    auth_token_file: str | None = None
    auth_token_credential: str | None = None
    messaging_service_sid: str | None = None
    api_base: str | None = None
    headers: dict[str, str] | None = None
    secret_file: str | None = None
    secret_credential: str | None = None
    bot_token_file: str | None = None
    bot_token_credential: str | None = None
    signing_secret_file: str | None = None
    signing_secret_credential: str | None = None
    channel: str | None = None

    def given(self) -> set[str]:
        return {f.name for f in attrs.fields(ChannelSection) if getattr(self, f.name) is not None}


class _Build:
    """Validation of one channel section, collecting every error with its key path."""

    def __init__(self, name: str, section: ChannelSection, base: Path, environ: Mapping[str, str]):
        self.name = name
        self.section = section
        self.base = base
        self.environ = environ
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"channels.{self.name}.{key}: {message}")

    def secret(self, key: str) -> Secret | None:
        return read_secret(
            key,
            getattr(self.section, f"{key}_file"),
            getattr(self.section, f"{key}_credential"),
            self.base,
            self.environ,
            self.error,
        )

    def required(self, *keys: str) -> None:
        for key in keys:
            if getattr(self.section, key) is None:
                self.error(key, "required key missing")

    def ca_file(self) -> Path | None:
        if self.section.ca_file is None:
            return None
        path = self.base / self.section.ca_file
        if not path.is_file():
            self.error("ca_file", f"no such file: {path}")
            return path
        # Build the TLS context the transport will build, as it will, whatever else is wrong in
        # the section: a file that holds no usable certificate must fail the check (in the same
        # pass as the section's other errors), not the daemon's reload.
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            self.error("ca_file", f"{path} is not a usable CA certificate file (PEM): {reason}")
        return path

    def settings(self) -> Settings:
        s = self.section
        if s.transport == "smtp":
            security = s.security or "starttls"
            if security not in SMTP_PORTS:
                self.error("security", "expected 'none', 'starttls' or 'tls'")
                security = "starttls"
            self.required("host", "sender")
            if s.host is not None and (problem := host_problem(s.host)) is not None:
                self.error("host", problem)
            if s.sender is not None and "@" not in s.sender:
                self.error("sender", "not an email address")
            password = self.secret("password")
            if (s.username is None) != (password is None) and not self.errors:
                self.error("username", "a username and a password go together")
            return SmtpSettings(
                host=s.host or "",
                port=s.port if s.port is not None else SMTP_PORTS[security],
                sender=s.sender or "",
                security=security,
                username=s.username,
                password=password,
                ca_file=self.ca_file(),
            )
        if s.transport == "twilio":
            self.required("account_sid")
            token = self.secret("auth_token")
            if s.auth_token_file is None and s.auth_token_credential is None:
                self.error("auth_token_file", "required: auth_token_file or auth_token_credential")
            if (s.sender is None) == (s.messaging_service_sid is None):
                self.error("sender", "give exactly one of sender or messaging_service_sid")
            api_base = (s.api_base or TWILIO_API).rstrip("/")
            if re.fullmatch(r"https?://[^/\s]+(/\S*)?", api_base) is None:
                self.error("api_base", "not an http:// or https:// URL")
            elif (problem := url_problem(api_base)) is not None:
                self.error("api_base", problem)
            return TwilioSettings(
                account_sid=s.account_sid or "",
                auth_token=token or Secret(""),
                sender=s.sender,
                messaging_service_sid=s.messaging_service_sid,
                api_base=api_base,
                ca_file=self.ca_file(),
            )
        if s.transport == "slack":
            bot_token = self.secret("bot_token")
            given = s.bot_token_file is not None or s.bot_token_credential is not None
            if given != (s.channel is not None):
                self.error("channel", "a Slack app's bot_token and its channel go together")
            elif s.channel is not None and _SLACK_CHANNEL_RE.fullmatch(s.channel) is None:
                self.error("channel", "expected a channel's name (#ops) or its id (C0123ABCD)")
            api_base = (s.api_base or SLACK_API).rstrip("/")
            if (problem := url_problem(api_base)) is not None:
                self.error("api_base", problem)
            return SlackSettings(
                ca_file=self.ca_file(),
                bot_token=bot_token,
                signing_secret=self.secret("signing_secret"),
                channel=s.channel,
                api_base=api_base,
            )
        for name, value in (s.headers or {}).items():
            # The value is often a secret (a bearer token): never quoted.
            if _HEADER_NAME_RE.fullmatch(name) is None:
                quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
                self.error(f"headers.{quoted}", "not a valid HTTP header name")
            elif not isinstance(value, str) or _HEADER_VALUE_RE.fullmatch(value) is None:
                self.error(f"headers.{name}", "a header value is printable ASCII, on one line")
        return WebhookSettings(
            headers=dict(s.headers or {}), secret=self.secret("secret"), ca_file=self.ca_file()
        )


def build_channel(
    name: str, section: ChannelSection, base: Path, environ: Mapping[str, str] | None = None
) -> tuple[Channel | None, list[str]]:
    """Validate `[channels.NAME]` into a `Channel`, or list every error with its key path."""
    build = _Build(name, section, base, os.environ if environ is None else environ)
    transport = section.transport
    if transport not in TRANSPORTS[name]:
        expected = ", ".join(map(repr, TRANSPORTS[name]))
        build.error(
            "transport", f"unknown transport {transport!r} for {name} (expected {expected})"
        )
        return None, build.errors
    for key in sorted(section.given() - COMMON_KEYS - TRANSPORT_KEYS[transport]):
        build.error(key, f"not a setting of transport {transport!r}")
    if transport == "log":
        return (None if build.errors else log_channel(name)), build.errors

    concurrency, rate, burst = _DEFAULTS[name]
    if section.rate_limit is not None:
        try:
            rate = parse_rate(section.rate_limit)
        except ValueError as exc:
            build.error("rate_limit", str(exc))
    counts = {
        "concurrency": section.concurrency or concurrency,
        "burst": section.burst or burst,
        "max_attempts": section.max_attempts or DEFAULT_MAX_ATTEMPTS,
    }
    for key in counts:
        value = getattr(section, key)
        if value is not None and value < 1:
            build.error(key, "must be 1 or more")
    for key, most in (
        ("max_attempts", MAX_ATTEMPTS),
        ("concurrency", MAX_CONCURRENCY),
        ("burst", MAX_BURST),
    ):
        value = getattr(section, key)
        if value is not None and value > most:
            build.error(key, f"must be at most {most}")
    if section.port is not None and not 0 < section.port < 65536:
        build.error("port", "must be 1 to 65535")
    settings = build.settings()
    if build.errors:
        return None, build.errors
    return (
        Channel(
            name=name,
            transport=transport,
            timeout=section.timeout or DEFAULT_TIMEOUT,
            concurrency=counts["concurrency"],
            rate=rate,
            burst=counts["burst"],
            max_attempts=counts["max_attempts"],
            retry_initial=section.retry_initial or RETRY_INITIAL,
            retry_max=section.retry_max or RETRY_MAX,
            settings=settings,
        ),
        [],
    )
