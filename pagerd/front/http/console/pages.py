"""The console's HTML: Jinja2 templates with autoescaping on for every one of them, and the
style sheet and script, all shipped inside the package and read once, when the console is
built (no file is opened while a request waits, and no page loads anything from elsewhere).

Every page is sent with a Content-Security-Policy that allows only this server's own style
sheet and script: were a value ever to slip past escaping, a browser would still run none of
it. Pages are never cached (they hold who is signed in and a CSRF token), and never framed.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Final

import jinja2

from pager.text import controls
from pagerd.front.http.asgi import Response

HTML: Final = "text/html; charset=utf-8"
STATIC: Final = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
TEMPLATES: Final = (
    "base.html",
    "sign_in.html",
    "overview.html",
    "_overview_live.html",
    "incident.html",
    "_incident_live.html",
    "error.html",
)
SECURITY_HEADERS: Final = (
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
)


def shown(value: object) -> str:
    """A value a client sent, safe to show: what is not printable escaped (bidi overrides,
    terminal controls), line breaks kept. HTML escaping is autoescape's, after this."""
    return controls(str(value), keep="\n\t")


class Pages:
    def __init__(self, root: str) -> None:
        """`root`: the path the console is served under (`/console`)."""
        self.root = root
        package = resources.files("pagerd.front.http")
        sources = {
            name: (package / "templates" / "console" / name).read_text(encoding="utf-8")
            for name in TEMPLATES
        }
        self._env = jinja2.Environment(
            loader=jinja2.DictLoader(sources),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["shown"] = shown
        self._env.globals["root"] = root
        self._templates = {name: self._env.get_template(name) for name in TEMPLATES}
        self._static = {
            name: (package / "static" / "console" / name).read_bytes() for name in STATIC
        }

    def render(
        self,
        template: str,
        status: int = 200,
        headers: tuple[tuple[str, str], ...] = (),
        **context: Any,
    ) -> Response:
        body = self._templates[template].render(**context).encode("utf-8")
        return Response(status, body, HTML, (*SECURITY_HEADERS, *headers))

    def error(self, status: int, message: str) -> Response:
        """A page saying what went wrong, in a sentence (the same for a script's poll)."""
        return self.render("error.html", status, message=message, code=status)

    def static(self, name: str) -> Response | None:
        body = self._static.get(name)
        if body is None:
            return None
        headers = (("x-content-type-options", "nosniff"), ("cache-control", "max-age=300"))
        return Response(200, body, STATIC[name], headers)
