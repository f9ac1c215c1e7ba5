"""The web console's sessions and CSRF tokens, signed with pagerd's own keys (`keys.py`).

A session is a signed cookie, not a row anywhere: it names the user, when it ends, a random id,
and a fingerprint of the user's password hash at sign-in, so a new hash in the config (a
changed password) ends every session made with the old one at the next request. Its CSRF
token is the id's MAC for purpose "csrf": a page of another site cannot read the cookie, so
cannot make the token, and a token is good for its own session only.

Sign-in itself is a form too (login CSRF: a page of another site signing the victim in as the
attacker): its token is tied to a random value in a short-lived cookie set with the form.

Times are seconds since the epoch, given by the caller (pagerd's clock), never read here.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

import attrs
import msgspec

from pagerd.access.keys import SigningKeys

SESSION: Final = "session"
CSRF: Final = "csrf"
SIGN_IN: Final = "sign-in"
NOTICE: Final = "console-notice"
ID_BYTES: Final = 16
NOTICE_LIFETIME: Final = 600.0
"""How long the notice of an answer (the redirect's `?notice=`) is shown: reloading the page a
moment later says again what was done; a bookmark of it days later does not."""
MAX_NOTICE: Final = 500


class _Payload(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    user: str
    expires: int
    id: str
    fingerprint: str


@attrs.frozen(repr=False)
class Session:
    user: str
    expires: int
    id: str
    fingerprint: str

    def __repr__(self) -> str:
        return f"Session({self.user!r}, expires={self.expires})"  # never the id


def fingerprint(password_hash: str | None) -> str:
    """A short digest of a user's password hash ("" for a user without one): a session made
    under one hash is not valid under another."""
    if password_hash is None:
        return ""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def new_session(user: str, now: float, lifetime: float, password_hash: str | None) -> Session:
    return Session(
        user, int(now + lifetime), secrets.token_urlsafe(ID_BYTES), fingerprint(password_hash)
    )


def session_cookie(keys: SigningKeys, session: Session) -> str:
    payload = _Payload(session.user, session.expires, session.id, session.fingerprint)
    return keys.token(SESSION, msgspec.json.encode(payload))


def open_session(keys: SigningKeys, cookie: str, now: float) -> Session | None:
    """The session `cookie` holds, or None if it is not one of ours or has ended."""
    payload = keys.open(SESSION, cookie)
    if payload is None:
        return None
    try:
        found = msgspec.json.decode(payload, type=_Payload)
    except msgspec.DecodeError:
        return None
    if found.expires <= now:
        return None
    return Session(found.user, found.expires, found.id, found.fingerprint)


def csrf_token(keys: SigningKeys, session_id: str) -> str:
    """The token every POST of this session carries (a form's hidden field)."""
    return keys.sign(CSRF, session_id.encode()).hex()


def csrf_valid(keys: SigningKeys, session_id: str, token: str) -> bool:
    """Whether `token` is this session's, in constant time."""
    try:
        mac = bytes.fromhex(token)
    except ValueError:
        return False
    return keys.verify(CSRF, session_id.encode(), mac)


def sign_in_nonce(keys: SigningKeys) -> tuple[str, str]:
    """A new sign-in form's (cookie, token): the cookie holds a random value, signed; the token
    is that value's CSRF MAC. Either alone is useless."""
    nonce = secrets.token_urlsafe(ID_BYTES)
    return keys.token(SIGN_IN, nonce.encode()), csrf_token(keys, "sign-in:" + nonce)


def sign_in_valid(keys: SigningKeys, cookie: str, token: str) -> bool:
    payload = keys.open(SIGN_IN, cookie)
    if payload is None:
        return False
    return csrf_valid(keys, "sign-in:" + payload.decode("ascii", "replace"), token)


def notice_token(keys: SigningKeys, session_id: str, text: str, now: float) -> str:
    """What the page after an answer shows (`text`), signed for this session and time: the
    redirect's `?notice=` (POST, then redirect, then GET: reloading the page sends nothing
    again). Signed, so no link made elsewhere can put words of its own on a console page."""
    payload = msgspec.json.encode([_digest(session_id), int(now), text[:MAX_NOTICE]])
    return keys.token(NOTICE, payload)


def _digest(session_id: str) -> str:
    """What a notice names its session by: a token is signed, not hidden, and an address can
    travel (a Referer), so it holds a digest of the session's id, never the id."""
    return hashlib.sha256(b"notice:" + session_id.encode()).hexdigest()[:32]


def open_notice(keys: SigningKeys, session_id: str, token: str, now: float) -> str | None:
    """The text of a notice `token` made for this session within `NOTICE_LIFETIME` of `now`,
    or None."""
    payload = keys.open(NOTICE, token)
    if payload is None:
        return None
    try:
        found = msgspec.json.decode(payload, type=tuple[str, int, str])
    except msgspec.DecodeError:
        return None
    session, at, text = found
    if session != _digest(session_id) or not 0 <= now - at <= NOTICE_LIFETIME:
        return None
    return text
