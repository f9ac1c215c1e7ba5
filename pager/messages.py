"""The words of a page: what the person woken at 3 a.m. reads first."""

from __future__ import annotations

from pager.domain import Notify


def short(n: Notify) -> str:
    """One line, fitting an SMS where it can: service, level, message, how to acknowledge."""
    what = n.message or "alert"
    return f"[pager] {n.service} level {n.level}: {what} -- ack: pager ack {n.service}"
