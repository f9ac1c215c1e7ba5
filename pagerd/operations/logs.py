"""Logging: plain lines on a terminal, lines with syslog priority prefixes under systemd.

When stderr is the journal (`$JOURNAL_STREAM` names it), each line starts with `<N>` so the
journal records its level, and without a timestamp, which the journal adds itself.

One record is one line, or a first line and continuation lines that start with two spaces (a
traceback, a list of config errors), so nothing a client sends can pass for a record of its own:
call sites log client text with `%r`, and the formatters escape whatever is not printable but a
newline, and indent what follows a newline.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Final, TextIO

from pager.text import controls

_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


CONTINUATION: Final = "  "

_UNPRINTABLE: Final = re.compile(r"[^\n\t\x20-\x7e]")  # a fast first check: plain ASCII passes


def contained(text: str) -> str:
    """`text` as lines that cannot pass for records: what is not printable (ESC, CR, C1
    controls, bidi overrides, line separators) escaped, and every line after the first
    indented."""
    if _UNPRINTABLE.search(text):
        text = controls(text, keep="\n\t")
    return text.replace("\n", "\n" + CONTINUATION)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return contained(super().format(record))


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        # Every line of a multi-line message (a traceback) carries the priority.
        lines = contained(super().format(record)).split("\n")
        return "\n".join(f"<{priority}>{line}" for line in lines)


def to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Is `stream` the journal's stream? (`JOURNAL_STREAM` is "DEVICE:INODE" of it.)"""
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def configure(
    level: str, stream: TextIO = sys.stderr, environ: Mapping[str, str] = os.environ
) -> None:
    handler = logging.StreamHandler(stream)
    if to_journal(stream, environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
