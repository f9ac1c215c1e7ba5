"""Keeping secrets out of what a provider answers.

A provider's reply is stored (history, `pager status`) and logged, and providers echo what they
were sent: Express answers "Cannot POST /hooks/SECRET" with the webhook's secret path, a proxy
may echo the `Authorization` header with Twilio's credentials in base64. So every text from a
provider passes through `Redactor.clean` first: each known secret, in every form it may have
been sent in, becomes `<redacted>`; control characters are escaped (the text reaches terminals
and log lines), and so are lone surrogates (which the database cannot store); and the result
is capped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pagerd.config.channels import (
    Settings,
    SlackSettings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
)

MAX_TEXT: Final = 300
"""Characters of a provider's reply kept: enough to say what went wrong."""

MIN_SECRET: Final = 4
"""Shorter strings are not redacted: "a" would blank every reply, and is no secret anyway."""

MIN_PART: Final = 8
"""A URL's path segments and query values are redacted from this length: "hooks" may stay."""

_ESCAPES: Final = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


_PERCENT: Final = re.compile(r"%[0-9A-F]{2}")


def encodings(secret: str) -> set[str]:
    """`secret` as it may appear in a reply: in any of `_forms`, and in base64."""
    return _forms(secret) | {base64.b64encode(secret.encode()).decode()}


def _forms(text: str) -> set[str]:
    """`text` as the software behind a provider may echo it: as is, percent-encoded (whole or
    path-like, in upper- or lower-case hex), inside a JSON string (non-ASCII as it is or as
    `\\uXXXX`, and `/` as `\\/`, as PHP writes it), and in HTML (an error page)."""
    forms = {text}
    for encoded in (quote(text, safe=""), quote(text, safe="/")):
        forms |= {encoded, _PERCENT.sub(lambda m: m.group().lower(), encoded)}
    for quoted in (json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]):
        forms |= {quoted, quoted.replace("/", "\\/")}
    forms |= {html.escape(text), html.escape(text, quote=False)}
    return forms


def basic_auth(user: str, password: str) -> set[str]:
    """An HTTP basic-auth credential and SMTP AUTH PLAIN/LOGIN, encoded as they are sent."""
    return (
        encodings(password) | encodings(f"{user}:{password}") | encodings(f"\0{user}\0{password}")
    )


def url_secrets(url: str) -> set[str]:
    """What of a secret URL (a Slack or webhook target) a reply may quote: the URL, its path and
    query, each long path segment and query value, decoded or not. The scheme and host stay:
    they are shown anyway, and say where the failure was."""
    parts = urlsplit(url)
    found = {url, parts.path, parts.query, f"{parts.path}?{parts.query}", parts.netloc + parts.path}
    found |= {unquote(f) for f in found}
    found |= {p for p in parts.path.split("/") if len(p) >= MIN_PART}
    found |= {unquote(p) for p in parts.path.split("/") if len(p) >= MIN_PART}
    found |= {v for _, v in parse_qsl(parts.query) if len(v) >= MIN_PART}
    if parts.password:
        found |= basic_auth(unquote(parts.username or ""), unquote(parts.password))
    return {form for f in found if len(f) >= MIN_SECRET and f != "/" for form in _forms(f)}


class Redactor:
    """Replaces every known secret in a text (longest first, so a secret containing another is
    replaced whole)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = _ordered(secrets)

    def with_(self, more: Iterable[str]) -> Redactor:
        """This redactor and `more` (a notification's own secrets, like its webhook URL)."""
        return Redactor([*self._secrets, *more])

    def clean(self, text: object, limit: int = MAX_TEXT) -> str:
        out = str(text)
        for secret in self._secrets:
            if secret in out:
                out = out.replace(secret, "<redacted>")
        out = out.translate(_ESCAPES)
        if not out.isascii():
            # A lone surrogate (JSON can carry "\\ud800") cannot be stored as text: escaped.
            out = out.encode("utf-8", "backslashreplace").decode()
        return out if len(out) <= limit else out[: limit - 1] + "…"


def _ordered(secrets: Iterable[str]) -> list[str]:
    return sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)


def channel_secrets(settings: Settings) -> set[str]:
    """Every secret of a channel's settings, in the forms its transport sends them in."""
    found: set[str] = set()
    if isinstance(settings, SmtpSettings) and settings.password is not None:
        found |= basic_auth(settings.username or "", settings.password.value)
    elif isinstance(settings, TwilioSettings):
        found |= basic_auth(settings.account_sid, settings.auth_token.value)
    elif isinstance(settings, WebhookSettings):
        if settings.secret is not None:
            found |= encodings(settings.secret.value)
        for value in settings.headers.values():
            # "Bearer TOKEN": the whole value, and the credential on its own.
            found |= encodings(value) | encodings(value.rpartition(" ")[2])
    elif isinstance(settings, SlackSettings):
        for secret in (settings.bot_token, settings.signing_secret):
            if secret is not None:
                found |= encodings(secret.value)
    return found
