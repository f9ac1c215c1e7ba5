"""The web console in tests: a config with console users, and signing in with a real form."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import httpx

from pagerd.access.passwords import hash_password
from pagerd.config import Config
from tests.http import http_config

PASSWORDS: Final = {"alice": "correct horse battery", "viewer": "only looking 123"}
LOG_N: Final = 4
"""scrypt's cost in tests: the format and the checks are the same, the hash is instant."""


def console_config(folder: Path, console: str = "", users: str | None = None) -> Config:
    """The HTTP harness's config with `[console]` (plus `console`): alice may answer, viewer is
    read-only (their passwords are `PASSWORDS`)."""
    if users is None:
        users = user_table("alice") + user_table("viewer") + "read_only = true\n"
    return http_config(folder, extra=f"\n[console]\n{console}\n{users}")


def user_table(name: str, password: str | None = None) -> str:
    """`[console.users.NAME]` with the hash of `password` (by default, `PASSWORDS[name]`)."""
    hashed = hash_password(PASSWORDS[name] if password is None else password, log_n=LOG_N)
    return f'[console.users.{name}]\npassword_hash = "{hashed}"\n'


_CSRF: Final = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, f"no CSRF token in the page:\n{page[:2000]}"
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient, user: str, password: str | None = None
) -> httpx.Response:
    """Sign `client` in as `user` through the sign-in form (its cookies are kept)."""
    form = await client.get("/console/sign-in")
    assert form.status_code == 200, form.text
    return await client.post(
        "/console/sign-in",
        data={
            "username": user,
            "password": PASSWORDS[user] if password is None else password,
            "csrf": csrf_of(form.text),
        },
    )
