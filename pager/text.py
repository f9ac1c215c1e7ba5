"""Text that clients send: kept whatever it holds, bounded, and shown without harm.

Monitoring hooks pass whatever log line they have, so an alert's text may be too long, hold
bytes that are not UTF-8, or carry control characters and terminal escapes. The alert must
still page (so text is cut and repaired, never refused), and what it says must never reach a
terminal or a log line as anything but visible characters.
"""

from __future__ import annotations

import os
import re
from typing import Final

TRUNCATED: Final = "… [truncated]"
REPLACEMENT: Final = "\ufffd"

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_URL: Final = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]{1,2048}")
"""An http(s) URL of the characters RFC 3986 allows (but `'`): no space, quote, `<`, `>`, `|`,
backslash or control character, whatever shows it (an HTML attribute, Slack's `<url|text>`)."""


def clip(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its start and a visible marker, in
    `limit` characters together."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def repair(text: str) -> str:
    """Valid text for the wire: NUL and lone surrogates (bytes that were not UTF-8, as Python
    hands them over from argv) become U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text).replace("\x00", REPLACEMENT)


def from_argv(arg: str) -> str:
    """A command-line argument as UTF-8 text: the bytes the caller passed, invalid ones replaced
    by U+FFFD (Python keeps them as lone surrogates, which cannot be encoded)."""
    try:
        return os.fsencode(arg).decode("utf-8", "replace")
    except UnicodeError:
        return repair(arg)


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped as Python would (`\\x1b`,
    `\\n`, `\\u202e`), and backslashes doubled so an escape cannot be faked: control
    characters, C1 controls, bidi overrides and line separators cannot move the cursor, change
    the terminal, or start a line that looks like another."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)


def controls(text: str, keep: str = "") -> str:
    """`text` with only what is not printable (bar the characters of `keep`) escaped, for text
    whose backslashes are its own escapes already (the metrics' exposition format, a page)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def _escape(c: str) -> str:
    return "\\\\" if c == "\\" else repr(c)[1:-1]


def with_link(text: str, url: str) -> str:
    """An alert's message with the link to where it came from after it, as pagerd writes
    Alertmanager's `generatorURL`: `Disk full <http://prometheus:9090/graph?...>`."""
    return f"{text} <{url}>"


def split_link(message: str) -> tuple[str, str]:
    """`message` without the link it ends with (`with_link`), and that link; `(message, "")`
    if it ends with none, or with one that is not an http(s) URL of plain characters. Linear
    in the message's length, whatever it holds."""
    if not message.endswith(">"):
        return message, ""
    at = message.rfind(" <")
    if at < 0 or _URL.fullmatch(message, at + 2, len(message) - 1) is None:
        return message, ""
    return message[:at], message[at + 2 : -1]
