"""The console's forms, read strictly: `application/x-www-form-urlencoded`, UTF-8, a known
set of fields each given once, each within bounds. Anything else is a `FormError` with its
status (400, 415) and a sentence, and changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

MAX_FORM_BYTES: Final = 4096
MAX_FIELD: Final = 1024
FORM: Final = "application/x-www-form-urlencoded"


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_form(headers: Mapping[str, str], body: bytes, fields: frozenset[str]) -> dict[str, str]:
    """The form in `body`, every one of `fields` present (empty allowed), nothing else."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM:
        raise FormError(415, f"expected a form ({FORM})")
    if len(body) > MAX_FORM_BYTES:
        raise FormError(413, f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("ascii")  # a form's bytes are percent-encoded: ASCII only
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=len(fields) + 1,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "the form is not valid (URL-encoded UTF-8 fields)") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in fields:
            raise FormError(400, "the form has a field it does not take")
        if name in form:
            raise FormError(400, "the form gives a field twice")
        if len(value) > MAX_FIELD or "\x00" in value:
            raise FormError(400, "a field of the form is too long or holds a NUL")
        form[name] = value
    missing = fields - form.keys()
    if missing:
        raise FormError(400, "the form is missing a field")
    return form
