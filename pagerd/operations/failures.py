"""Failures as an operator reads them: the causes inside Trio's exception groups, one line each."""

from __future__ import annotations

from collections.abc import Iterator


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside `exc`, however deeply Trio's nurseries grouped them."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def reason(exc: BaseException) -> str:
    """One line that says what went wrong, for an error nothing else put into words."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
