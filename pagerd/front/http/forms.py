"""HTML forms (`application/x-www-form-urlencoded`), read one way for every endpoint that takes
one: acknowledge links, the console, Twilio's SMS replies and Slack's button clicks.

A form is read strictly, within bounds given by the caller: its bytes UTF-8 (percent-encoded
or not, as the WHATWG form parser takes them), every field `name=value` (`&` between, none
empty, no bare name), at most so many fields, at most so many bytes. Anything else is a
`FormError` with its status (400, 413; 415 for a body of another type) and a sentence a person
can act on, raised before anything is done. `parse_form` gives every field in order, a name
given twice twice (a provider's signature covers each); `read_form` on top of it takes a known
set of fields, each exactly once, each within its own bound.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

FORM: Final = "application/x-www-form-urlencoded"
MAX_FORM_BYTES: Final = 4096
"""Bytes of a form a person's browser sends (a few fields: a token, a name, a password)."""
MAX_VALUE: Final = 1024
"""Characters of one field of such a form."""


class FormError(Exception):
    """A form that cannot be read: the status to answer and why, in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_form(content_type: str) -> bool:
    """Whether a `Content-Type` header's value says the body is a form (parameters such as
    `charset` aside)."""
    return content_type.split(";", 1)[0].strip().lower() == FORM


def parse_form(
    body: bytes, *, max_fields: int, max_bytes: int | None = None
) -> list[tuple[str, str]]:
    """Every field of the form `body`, in order, values possibly empty; an empty body has none.
    `FormError` (413) if it is over `max_bytes` (None: the front door's bound on bodies is the
    only one); (400) if it is not UTF-8, not a form, or has more than `max_fields` fields."""
    if max_bytes is not None and len(body) > max_bytes:
        raise FormError(413, f"the form is over {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(400, "the form is not valid (URL-encoded UTF-8 fields)") from None
    if not text:
        return []
    if text.count("&") >= max_fields:  # counted before any is decoded, as parse_qsl does
        raise FormError(400, f"the form has more than {max_fields} fields")
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError:  # a field that is no `name=value`, or UTF-8 percent-encoded wrong
        raise FormError(400, "the form is not valid (URL-encoded UTF-8 fields)") from None


def read_form(
    content_type: str,
    body: bytes,
    fields: frozenset[str],
    *,
    max_bytes: int = MAX_FORM_BYTES,
    max_value: int = MAX_VALUE,
) -> dict[str, str]:
    """The form in `body`, sent as `content_type`: every one of `fields` given once (empty
    allowed), nothing else, no value over `max_value` characters or holding a NUL. `FormError`
    otherwise: 415 (not a form), 413 (over `max_bytes`), 400 (the rest)."""
    if not is_form(content_type):
        raise FormError(415, f"expected a form ({FORM})")
    pairs = parse_form(body, max_fields=len(fields) + 1, max_bytes=max_bytes)
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in fields:
            raise FormError(400, "the form has a field it does not take")
        if name in form:
            raise FormError(400, "the form gives a field twice")
        if len(value) > max_value or "\x00" in value:
            raise FormError(400, "a field of the form is too long or holds a NUL")
        form[name] = value
    if fields - form.keys():
        raise FormError(400, "the form is missing a field")
    return form
