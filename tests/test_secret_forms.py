"""A secret a provider echoes comes back in whatever form its software writes text in: JSON
with `/` escaped (PHP's json_encode) or non-ASCII as `\\uXXXX`, an HTML error page (`&amp;`),
percent-encoding in lower-case hex. Each of these must be redacted as the plain form is."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from urllib.parse import quote

import pytest

from pagerd.config.channels import WebhookSettings
from pagerd.delivery.redact import Redactor, channel_secrets, url_secrets

TOKEN = 'tok+en/Sé"cret=='  # a bearer token as some issue them: base64 with / and +, and worse
URL = "https://hooks.example.com/hooks/a&b=c/Zé+SEGMENT/x?key=va/lu+e&é=1"


def _json(text: str) -> str:
    return json.dumps(text)[1:-1]


def _php_json(text: str) -> str:
    return _json(text).replace("/", "\\/")


def _lower_percent(text: str, safe: str = "") -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(text, safe=safe))


ECHOES: dict[str, Callable[[str], str]] = {
    "json": _json,
    "json, / escaped": _php_json,
    "html": html.escape,
    "percent, lower case": _lower_percent,
    "percent, path kept": lambda t: _lower_percent(t, safe="/"),
}


@pytest.mark.parametrize("form", ECHOES)
def test_a_header_secret_echoed_in_any_common_form_is_redacted(form: str) -> None:
    settings = WebhookSettings(headers={"Authorization": f"Bearer {TOKEN}"})
    redactor = Redactor(channel_secrets(settings))
    echoed = ECHOES[form](TOKEN)
    clean = redactor.clean(f'{{"error": "bad token", "got": "Bearer {echoed}"}}')
    assert echoed not in clean and "<redacted>" in clean, clean


@pytest.mark.parametrize("form", ECHOES)
def test_a_secret_url_echoed_in_any_common_form_is_redacted(form: str) -> None:
    redactor = Redactor(url_secrets(URL))
    path = "/hooks/a&b=c/Zé+SEGMENT/x"
    echoed = ECHOES[form](path)
    clean = redactor.clean(f"Cannot POST {echoed}")
    assert "SEGMENT" not in clean, clean
