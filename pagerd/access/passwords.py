"""The web console's passwords: hashed with scrypt, from the standard library.

scrypt is memory-hard (each guess costs `128 * r * n` bytes of memory as well as time, which is
what makes a graphics card or an ASIC no faster at guessing than a server), and
`hashlib.scrypt` is OpenSSL's: no compiled dependency to add, audit and keep building on every
Python we support (argon2-cffi would be one). The parameters are OWASP's for scrypt at a quarter
of the memory of its first choice: n = 2**15, r = 8, p = 3 (32 MiB and about a tenth of a
second a hash, equivalent in strength to n = 2**17, p = 1). They are written into each hash,
so stronger ones can come later without invalidating a hash made now.

A hash reads `$scrypt$ln=15,r=8,p=3$SALT$HASH` (PHC string format; salt and hash in base64
without padding). `pagerd hash-password` makes one; the config holds it, never the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Final

import attrs

LOG_N: Final = 15
R: Final = 8
P: Final = 3
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
MAX_PASSWORD_BYTES: Final = 1024
"""A longer password is refused before it is hashed: a megabyte of it would cost a megabyte of
PBKDF2 input on every sign-in attempt."""
MAX_LOG_N: Final = 20
"""The most memory a configured hash may ask for: 2**20 * 128 * r bytes (1 GiB at r = 8) is
already past what a sign-in should take; beyond that a typo in the config is assumed."""

_FORMAT: Final = re.compile(
    r"\$scrypt\$ln=(?P<ln>[0-9]{1,2}),r=(?P<r>[0-9]{1,2}),p=(?P<p>[0-9]{1,2})"
    r"\$(?P<salt>[A-Za-z0-9+/]{16,64})\$(?P<hash>[A-Za-z0-9+/]{32,128})"
)


class PasswordError(ValueError):
    """Not a password hash pagerd can check; the message says why (never quoting it)."""


@attrs.frozen(repr=False)
class PasswordHash:
    log_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __repr__(self) -> str:
        return f"PasswordHash(scrypt ln={self.log_n}, r={self.r}, p={self.p})"

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        found = _FORMAT.fullmatch(text.strip())
        if found is None:
            raise PasswordError(
                "not a password hash (expected $scrypt$ln=N,r=R,p=P$SALT$HASH, as "
                "`pagerd hash-password` prints)"
            )
        log_n, r, p = int(found["ln"]), int(found["r"]), int(found["p"])
        if not 1 <= log_n <= MAX_LOG_N or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise PasswordError(f"scrypt parameters out of range (ln 1 to {MAX_LOG_N}, r, p)")
        try:
            return cls(log_n, r, p, _unb64(found["salt"]), _unb64(found["hash"]))
        except ValueError:  # binascii.Error: a length base64 cannot have
            raise PasswordError("the salt or hash is not base64") from None

    def matches(self, password: str) -> bool:
        """Whether `password` is the one hashed, compared in constant time."""
        encoded = password.encode("utf-8", "surrogateescape")
        if len(encoded) > MAX_PASSWORD_BYTES:
            return False
        digest = _scrypt(encoded, self.salt, self.log_n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(digest, self.digest)

    def encode(self) -> str:
        parameters = f"ln={self.log_n},r={self.r},p={self.p}"
        return f"$scrypt${parameters}${_b64(self.salt)}${_b64(self.digest)}"


def hash_password(password: str, *, log_n: int = LOG_N, r: int = R, p: int = P) -> str:
    """`password` hashed with a new salt, as the config takes it. Tests pass a small `log_n`."""
    encoded = password.encode("utf-8")
    if not encoded:
        raise PasswordError("the password is empty")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordError(f"the password is over {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(encoded, salt, log_n, r, p, HASH_BYTES)
    return PasswordHash(log_n, r, p, salt, digest).encode()


DUMMY: Final = PasswordHash(LOG_N, R, P, bytes(SALT_BYTES), bytes(HASH_BYTES))
"""Checked against for a user who does not exist, so that a wrong name takes as long to refuse
as a wrong password (the answer's time does not tell which names exist)."""


def _scrypt(password: bytes, salt: bytes, log_n: int, r: int, p: int, size: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n + (1 << 20), dklen=size
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
