"""`[templates]`: the notification texts an operator overrides, checked when the config loads.

Keys are the forms of `pager.templates.FORMS` (`email_subject`, `email_body`, `sms`, `slack`),
each a Jinja2 template over `pager.templates.VARIABLES`. A key not among them, a template that
is not Jinja2, or one naming a variable pagerd does not give is an error naming the key: it is
found by `pagerd --check`, not by the first page that uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pager.templates import DEFAULT_TEMPLATES, FORMS, Templates, problem

if TYPE_CHECKING:
    from pagerd.config.model import Config

MAX_TEMPLATE: Final = 16 * 1024
"""Characters of one template at most."""


def build_templates(value: Any) -> tuple[Templates, list[str]]:
    """The `[templates]` table as `Templates` (the defaults for what it leaves out), and every
    problem in it, each naming its key."""
    if not isinstance(value, dict):
        return DEFAULT_TEMPLATES, ["templates: expected a table"]
    sources: dict[str, str] = {}
    errors: list[str] = []
    for key, source in value.items():
        at = f"templates.{key}"
        if key not in FORMS:
            errors.append(f"{at}: unknown key (known: {', '.join(FORMS)})")
            continue
        if not isinstance(source, str):
            errors.append(f"{at}: expected a string")
            continue
        if len(source) > MAX_TEMPLATE:
            errors.append(f"{at}: longer than {MAX_TEMPLATE} characters")
            continue
        found = problem(key, source)
        if found is not None:
            errors.append(f"{at}: {found}")
            continue
        sources[key] = source
    if errors:
        return DEFAULT_TEMPLATES, errors
    return (Templates(sources) if sources else DEFAULT_TEMPLATES), []


def link_note(config: Config) -> str | None:
    """A word for `pagerd --check` when pages would carry acknowledge links
    but cannot: an email or Slack channel is configured and `http.public_url` is not set. Not an
    error: the pages go out, answered with `pager ack` as before."""
    linked = sorted(name for name in ("email", "slack") if name in config.channels)
    if not linked or config.http.public_url:
        return None
    return (
        f"http.public_url is not set: {' and '.join(linked)} pages carry no acknowledge links"
        " (see docs/answering.md)"
    )
