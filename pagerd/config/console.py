"""`[console]` (the web console: sessions, sign-in lock-out, a trusted single-sign-on proxy) and
`[console.users.NAME]` (who may sign in, with which password hash, and whether read-only),
validated.

A password hash is not a secret in the sense a key is (it cannot be replayed), but it is never
shown all the same: `ConsoleUser` has no readable repr of it, and no error quotes it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from pagerd.access.passwords import PasswordError, PasswordHash
from pagerd.config.durations import Duration

DEFAULT_SESSION: Final = 12 * 3600.0
DEFAULT_LOCKOUT: Final = 15 * 60.0
DEFAULT_MAX_FAILURES: Final = 5
DEFAULT_HEADER: Final = "X-Forwarded-User"
DEFAULT_REFRESH: Final = 5.0

USER_NAME: Final = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
"""A console user's name: what history records as who acknowledged (`by`), so plain."""
_HEADER: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
_SESSION: Final = Duration(DEFAULT_SESSION)
_LOCKOUT: Final = Duration(DEFAULT_LOCKOUT)
_REFRESH: Final = Duration(DEFAULT_REFRESH)


def is_user_name(name: str) -> bool:
    return USER_NAME.fullmatch(name) is not None


@attrs.frozen
class UserSection:
    password_hash: str | None = None
    read_only: bool = False


@attrs.frozen
class ConsoleSection:
    session_lifetime: Duration = _SESSION
    max_failed_sign_ins: int = DEFAULT_MAX_FAILURES
    lockout: Duration = _LOCKOUT
    refresh: Duration = _REFRESH
    trusted_proxies: list[str] | None = None
    trusted_header: str = DEFAULT_HEADER
    proxy_read_only: bool = True


@attrs.frozen(repr=False)
class ConsoleUser:
    name: str
    password: PasswordHash | None
    """None: a user only the trusted proxy signs in (no password sign-in)."""
    read_only: bool = False

    def __repr__(self) -> str:
        return f"ConsoleUser({self.name!r}, read_only={self.read_only})"


@attrs.frozen
class ConsoleConfig:
    users: Mapping[str, ConsoleUser] = attrs.Factory(dict)
    session_lifetime: float = DEFAULT_SESSION
    max_failed_sign_ins: int = DEFAULT_MAX_FAILURES
    """Failed sign-ins a user name may have, or an address 4 times as many, before it waits
    `lockout`."""
    lockout: float = DEFAULT_LOCKOUT
    refresh: float = DEFAULT_REFRESH
    """How often an open page brings itself up to date."""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    trusted_header: str = DEFAULT_HEADER
    proxy_read_only: bool = True
    """Whether a user the proxy names who is not in `[console.users]` is read-only."""

    def trusts(self, address: str) -> bool:
        """Whether `address` (a client's IP) is a configured proxy."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def build_console(
    value: Any,
    structure: Callable[[Any, type, str], tuple[Any, list[str]]],
    join: Callable[[str, object], str],
) -> tuple[ConsoleConfig | None, list[str]]:
    """`[console]` into a `ConsoleConfig`, or every error with its key path."""
    if not isinstance(value, dict):
        return None, ["console: expected a table"]
    table = dict(value)
    users_table = table.pop("users", {})
    section, errors = structure(table, ConsoleSection, "console")
    users: dict[str, ConsoleUser] = {}
    if not isinstance(users_table, dict):
        errors.append("console.users: expected a table of users ([console.users.NAME])")
        users_table = {}
    for name, user_table in users_table.items():
        at = join("console.users", name)
        user, found = structure(user_table, UserSection, at)
        errors += found
        if not is_user_name(name):
            errors.append(f"{at}: a user name is 1 to 64 letters, digits, or . _ @ + -")
            continue
        if user is None:
            continue
        password = None
        if user.password_hash is not None:
            try:
                password = PasswordHash.parse(user.password_hash)
            except PasswordError as exc:
                errors.append(f"{at}.password_hash: {exc}")
                continue
        users[name] = ConsoleUser(name, password, user.read_only)
    if section is None:
        return None, errors
    networks = []
    for i, text in enumerate(section.trusted_proxies or ()):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            errors.append(
                f'console.trusted_proxies[{i}]: expected an IP address or network, like "127.0.0.1"'
            )
    if section.trusted_proxies is not None and not section.trusted_proxies:
        errors.append("console.trusted_proxies: an empty list trusts nobody (leave it out)")
    if _HEADER.fullmatch(section.trusted_header) is None:
        errors.append("console.trusted_header: a header name, like X-Forwarded-User")
    if section.max_failed_sign_ins < 1:
        errors.append("console.max_failed_sign_ins: must be 1 or more")
    for key in ("session_lifetime", "lockout", "refresh"):
        if float(getattr(section, key)) <= 0:
            errors.append(f"console.{key}: must be more than zero")
    if float(section.refresh) < 1:
        errors.append('console.refresh: at least "1s" (every open page polls this often)')
    if not section.trusted_proxies:
        # Only a trusted proxy signs in a user without a password: with none, never.
        for user in users.values():
            if user.password is None:
                errors.append(
                    f"{join('console.users', user.name)}: no password_hash and no"
                    f" console.trusted_proxies: {user.name} can never sign in (add a"
                    " password_hash from pagerd hash-password, or trusted_proxies)"
                )
    if not users and not networks:
        errors.append(
            "console: nobody can sign in: add [console.users.NAME] with a password_hash "
            "(pagerd hash-password), or trusted_proxies"
        )
    return (
        ConsoleConfig(
            users=users,
            session_lifetime=float(section.session_lifetime),
            max_failed_sign_ins=section.max_failed_sign_ins,
            lockout=float(section.lockout),
            refresh=float(section.refresh),
            trusted_proxies=tuple(networks),
            trusted_header=section.trusted_header,
            proxy_read_only=section.proxy_read_only,
        ),
        errors,
    )
