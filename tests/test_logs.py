"""Log lines: levels the journal understands when stderr is the journal, plain otherwise."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

from pagerd.operations.logs import JournalFormatter, configure, to_journal


def test_journal_lines_carry_syslog_priorities() -> None:
    formatter = JournalFormatter()
    record = logging.LogRecord("pagerd.actors", logging.WARNING, "", 0, "opened %s", ("x",), None)
    assert formatter.format(record) == "<4>pagerd.actors: opened x"
    record = logging.LogRecord("pagerd", logging.ERROR, "", 0, "a\nb", (), None)
    assert formatter.format(record) == "<3>pagerd: a\n<3>  b"


def test_the_journal_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert to_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not to_journal(stream, {"JOURNAL_STREAM": "1:2"})
        assert not to_journal(stream, {})


def test_configure_uses_the_journal_format_only_for_the_journal(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        _configure_twice(tmp_path)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def _configure_twice(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w+") as stream:
        st = os.fstat(stream.fileno())
        configure("info", stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        logging.getLogger("pagerd.test").info("hello service=api")
        configure("info", io.StringIO(), {})
        stream.seek(0)
        assert stream.read() == "<6>pagerd.test: hello service=api\n"
