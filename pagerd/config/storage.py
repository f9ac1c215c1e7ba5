"""`[storage]`: where the daemon keeps its state. SQLite in the state directory (the default:
one node, nothing to set up), or a PostgreSQL database that several nodes share.

The DSN is a secret (it may carry a password, and always names the database's host and user):
it is never shown whole. `redact` takes it out of any text (a driver's error, a log line) and
`describe` names the database without it; config errors about it say what is wrong, never what
it holds. A password belongs in a systemd credential (`dsn_credential`), or in libpq's own
`~/.pgpass`/`PGPASSWORD`, not in the config file: `dsn` with a password is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from pagerd.config.channels import Secret, read_secret
from pagerd.config.durations import Duration

Backend = Literal["sqlite", "postgresql"]
BACKENDS: Final = ("sqlite", "postgresql")
MAX_POOL: Final = 100
_CONNECT_TIMEOUT: Final = Duration(5.0)
_STATEMENT_TIMEOUT: Final = Duration(10.0)
"""pagerd's statements take milliseconds: one running 10 s is a database in trouble. And a call
on a link that forwards nothing is cut after it + 2 s: well inside a client's wait (`pager`'s
30 s), so the client hears `unavailable`, and `pager status` answers from memory, instead of
timing out (review: at 30 s, `pager status` on a stalled node never answered in time)."""


@attrs.frozen
class StorageSection:
    """`[storage]` as written."""

    backend: str = "sqlite"
    dsn: str | None = None
    dsn_file: str | None = None
    dsn_credential: str | None = None
    pool_size: int = 4
    connect_timeout: Duration = _CONNECT_TIMEOUT
    statement_timeout: Duration = _STATEMENT_TIMEOUT


@attrs.frozen
class StorageConfig:
    """What the store is opened with. `dsn` only for PostgreSQL."""

    backend: Backend = "sqlite"
    dsn: Secret | None = None
    pool_size: int = 4
    """Connections each node keeps open (the commit's, the outbox's, status and history reads)."""
    connect_timeout: float = 5.0
    """How long opening a connection (or waiting for one of the pool's) may take."""
    statement_timeout: float = _STATEMENT_TIMEOUT
    """How long one statement may run before the server cancels it (then `StoreUnavailable`)."""


Section = Callable[[Any, type, str], tuple[Any, list[str]]]


def build_storage(
    value: Any, base: Path, environ: Mapping[str, str], section: Section
) -> tuple[StorageConfig, list[str]]:
    """`[storage]` checked: the config, and every problem as `storage.KEY: message`."""
    raw, errors = section(value, StorageSection, "storage")
    if raw is None:
        return StorageConfig(), errors
    s: StorageSection = raw

    def error(key: str, message: str) -> None:
        errors.append(f"storage.{key}: {message}")

    if s.backend not in BACKENDS:
        error("backend", 'expected "sqlite" or "postgresql"')
        return StorageConfig(), errors
    if not 1 <= s.pool_size <= MAX_POOL:
        error("pool_size", f"expected 1 to {MAX_POOL} connections")
    for key, seconds in (
        ("connect_timeout", s.connect_timeout),
        ("statement_timeout", s.statement_timeout),
    ):
        if not 1.0 <= seconds <= 3600.0:
            error(key, "expected a duration from 1s to 1h")
    given = [k for k in ("dsn", "dsn_file", "dsn_credential") if getattr(s, k) is not None]
    if s.backend == "sqlite":
        errors += [f'storage.{k}: only for backend = "postgresql"' for k in given]
        return StorageConfig(), errors
    dsn: Secret | None = None
    if len(given) > 1:
        error(given[1], f"give one of dsn, dsn_file or dsn_credential, not {' and '.join(given)}")
    elif not given:
        error("dsn", 'required with backend = "postgresql" (or dsn_file, or dsn_credential)')
    elif s.dsn is not None:
        dsn = Secret(s.dsn)
        if "password" in parse_dsn(s.dsn, lambda m: error("dsn", m)):
            error(
                "dsn",
                "holds a password: put the DSN in a file or a systemd credential (dsn_file,"
                " dsn_credential), or the password in ~/.pgpass, not in the config",
            )
    else:
        dsn = read_secret("dsn", s.dsn_file, s.dsn_credential, base, environ, error)
        if dsn is not None:
            parse_dsn(dsn.value, lambda m: error(given[0], m))
    return (
        StorageConfig(
            backend="postgresql",
            dsn=dsn,
            pool_size=s.pool_size,
            connect_timeout=float(s.connect_timeout),
            statement_timeout=float(s.statement_timeout),
        ),
        errors,
    )


_UNKNOWN_KEY: Final = re.compile(
    r'(?:invalid connection option|invalid URI query parameter:) "([A-Za-z_][A-Za-z0-9_]{0,63})"'
)


def parse_dsn(dsn: str, error: Callable[[str], None]) -> dict[str, str]:
    """The DSN's parameters (libpq's own parser), or {} and `error` told why (in words that
    quote none of it: the driver's message would)."""
    from psycopg import conninfo  # PostgreSQL's driver, loaded only for a PostgreSQL config

    try:
        return {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items() if v is not None}
    except Exception as exc:
        # libpq names an unknown parameter by its key alone, never a value: said as it is
        # (an operator's typo was otherwise told "expected key=value pairs").
        unknown = _UNKNOWN_KEY.search(str(exc))
        if unknown is not None:
            error(f"not a PostgreSQL connection string: unknown parameter {unknown.group(1)!r}")
            return {}
        error(
            "not a PostgreSQL connection string: expected key=value pairs"
            " (host=db.example.com dbname=pagerd user=pagerd) or a postgresql:// URI"
        )
        return {}


def describe(dsn: str) -> str:
    """The database a DSN names, for messages: its name, host and port, never its user's
    password (nor the DSN itself)."""
    params = parse_dsn(dsn, lambda _: None)
    name = params.get("dbname", "(default)")
    host = params.get("host") or params.get("hostaddr") or "(local socket)"
    port = params.get("port", "5432")
    return f'PostgreSQL database "{name}" on {host}:{port}'


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN, its password and its user's password in a URI taken out."""
    secrets = {dsn}
    password = parse_dsn(dsn, lambda _: None).get("password")
    if password:
        secrets.add(password)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    # A URI quoted in part (postgresql://user:PASSWORD@host): whatever sits after the colon.
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def milliseconds(seconds: float) -> int:
    """A timeout as PostgreSQL's settings take it."""
    return max(1, math.ceil(seconds * 1000))
