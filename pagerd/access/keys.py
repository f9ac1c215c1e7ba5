"""pagerd's own signing keys: what acknowledge links, console sessions and CSRF tokens are
signed with, so that whoever holds such a token was given it by this pagerd.

The keys live in the state folder (`signing.key`, mode 0600), never in the config: pagerd makes
the file on its first start and keeps it across restarts, so links already sent stay valid. The
file holds one key a line, in hex, the newest first. `rotate()` puts a new key first and keeps
the one before it, which still verifies (and no longer signs) until the next rotation: a link
mailed a minute before a rotation still works, one from two rotations ago does not.

Each use signs with a key of its own, derived from the file's (`sign(purpose, ...)`): a token
made for one purpose (a link) is never valid for another (a session).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

FILE_NAME: Final = "signing.key"
KEY_BYTES: Final = 32
KEPT: Final = 2
"""Keys kept in the file: the current one and the one before it."""
MAC_BYTES: Final = 16


class KeyFileError(Exception):
    """The key file cannot be read, made or written; the message names the file and why."""


@attrs.frozen(repr=False)
class SigningKeys:
    keys: tuple[bytes, ...] = attrs.field()

    @keys.validator
    def _check(self, attribute: object, value: Sequence[bytes]) -> None:
        if not value or any(len(k) != KEY_BYTES for k in value):
            raise ValueError(f"expected 1 to {KEPT} keys of {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"SigningKeys({len(self.keys)} keys)"  # never the keys themselves

    @classmethod
    def load_or_create(cls, state_dir: Path) -> SigningKeys:
        """The keys of `state_dir`, made (and written, 0600) if there are none yet."""
        path = state_dir / FILE_NAME
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        made = cls((secrets.token_bytes(KEY_BYTES),))
        try:
            _write(path, made, exclusive=True)
        except FileExistsError:
            return cls.load(path)  # another process made it first: use theirs
        return made

    @classmethod
    def load(cls, path: Path) -> SigningKeys:
        """The keys in `path`. Raises FileNotFoundError if there is no file, and KeyFileError
        if it cannot be used (never quoting its content)."""
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise
        except (OSError, UnicodeError) as exc:
            raise KeyFileError(f"{path}: cannot be read ({type(exc).__name__})") from None
        try:
            keys = tuple(bytes.fromhex(line) for line in text.split())
            return cls(keys[:KEPT])
        except ValueError:
            raise KeyFileError(f"{path}: not {KEY_BYTES}-byte keys in hex, one a line") from None

    def rotated(self) -> SigningKeys:
        """These keys with a new one first; the current one is kept to verify, older dropped."""
        return SigningKeys((secrets.token_bytes(KEY_BYTES), *self.keys[: KEPT - 1]))

    def save(self, state_dir: Path) -> None:
        """Write these keys to `state_dir`'s file, replacing it at once (0600)."""
        _write(state_dir / FILE_NAME, self, exclusive=False)

    def sign(self, purpose: str, message: bytes) -> bytes:
        """The MAC of `message` for `purpose`, with the current key."""
        return _mac(self.keys[0], purpose, message)

    def verify(self, purpose: str, message: bytes, mac: bytes) -> bool:
        """Whether `mac` is `message`'s for `purpose` under any kept key, in constant time (each
        kept key is tried, whichever matches)."""
        found = False
        for key in self.keys:
            found |= hmac.compare_digest(_mac(key, purpose, message), mac)
        return found

    def token(self, purpose: str, payload: bytes) -> str:
        """`payload` and its MAC as URL-safe text (`payload.mac`, base64 without padding). The
        payload is signed, not hidden: whoever holds the token can read it."""
        return f"{_b64(payload)}.{_b64(self.sign(purpose, payload))}"

    def open(self, purpose: str, token: str) -> bytes | None:
        """The payload of a `token` made for `purpose` by these keys, or None if it was not
        (tampered with, made for another purpose, signed by a dropped key, or not a token)."""
        payload_text, dot, mac_text = token.partition(".")
        if not dot:
            return None
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        if payload is None or mac is None or not self.verify(purpose, payload, mac):
            return None
        return payload


def _mac(key: bytes, purpose: str, message: bytes) -> bytes:
    derived = hmac.digest(key, b"pagerd signing key for " + purpose.encode(), hashlib.sha256)
    return hmac.digest(derived, message, hashlib.sha256)[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    if len(text) > 4096 or not text.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def _write(path: Path, keys: SigningKeys, *, exclusive: bool) -> None:
    """Write `keys` to `path` with mode 0600 from the start (never readable by others, not
    even for an instant), through a temporary file renamed over it, so that a crash leaves the
    old file or the new one, never half of one. With `exclusive`, FileExistsError if the file
    is there already.

    The new file keeps the owner and group of the one it replaces (of the state folder, when
    there is none yet): `pagerd rotate-key` run as root must not leave a file, 0600, that the
    pagerd running as its own user can no longer read."""
    text = "".join(key.hex() + "\n" for key in keys.keys)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _keep_owner(fd, path)
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(temporary, path)  # fails if another made it meanwhile
        else:
            os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except FileExistsError:
        raise
    except OSError as exc:
        raise KeyFileError(
            f"{path}: cannot be written ({exc.strerror or type(exc).__name__})"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _keep_owner(fd: int, path: Path) -> None:
    """Give the file open as `fd` the owner and group of `path`, or of its folder if there is
    no such file yet. Where this process may not (it is not root), a file that exists and is
    someone else's is an error (the new one would be unreadable to its owner); a folder that is
    someone else's is not (the file is then this user's, who runs pagerd or rotates its key)."""
    try:
        wanted = os.stat(path)
        existing = True
    except FileNotFoundError:
        wanted = os.stat(path.parent)
        existing = False
    made = os.fstat(fd)
    if (wanted.st_uid, wanted.st_gid) == (made.st_uid, made.st_gid):
        return
    try:
        os.fchown(fd, wanted.st_uid, wanted.st_gid)
    except PermissionError:
        if existing:
            raise KeyFileError(
                f"{path}: belongs to uid {wanted.st_uid} gid {wanted.st_gid}, and this user may "
                "not give a new file to them: run this as root or as that user"
            ) from None
