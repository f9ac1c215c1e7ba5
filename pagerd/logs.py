"""Logging: plain lines on a terminal, lines with syslog priority prefixes under systemd.

When stderr is the journal (`$JOURNAL_STREAM` names it), each line starts with `<N>` so the
journal records its level, and without a timestamp, which the journal adds itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Final, TextIO

_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        # Every line of a multi-line message (a traceback) carries the priority.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
