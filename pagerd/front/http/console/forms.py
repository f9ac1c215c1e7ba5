"""The console's forms, read strictly by the one form reader (`pagerd.front.http.forms`) with
its bounds for a person's browser: a known set of fields each given once, each within bounds.
Anything else is a `FormError` with its status (400, 413, 415) and a sentence, and changes
nothing."""

from __future__ import annotations

from collections.abc import Mapping

from pagerd.front.http import forms
from pagerd.front.http.forms import FORM, MAX_FORM_BYTES, FormError

__all__ = ["FORM", "MAX_FORM_BYTES", "FormError", "read_form"]


def read_form(headers: Mapping[str, str], body: bytes, fields: frozenset[str]) -> dict[str, str]:
    """The form of a request with `headers` in `body`, every one of `fields` present (empty
    allowed), nothing else."""
    return forms.read_form(headers.get("content-type", ""), body, fields)
