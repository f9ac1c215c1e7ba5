"""Acknowledge links: a token that names one incident and one person paged, signed by pagerd.

A page by email or Slack carries `PUBLIC_URL/ack/TOKEN` (and `PUBLIC_URL/resolve/TOKEN` where
the policy allows it). The token holds the service, the incident's number and the time it
opened as stored (in pagerd's own frame, not the wall-clock time the page shows: the stored
float is the same after a restart or a step of the wall clock, and is compared exactly), so
that a token of `api#3` never acts on `api#4`, nor on another `api#3` after a database
restored from an old backup numbered incidents again; and who was paged: the person
a `person:` or `schedule:` target was resolved to (`alice`), else the target as `pager status`
shows it (`email:alice@example.com`; a Slack webhook's URL, a secret, never whole). It is
signed with `SigningKeys` for the purpose "link", so no other token of pagerd's (a session, a
CSRF token) passes for one, and it is valid for as long as that incident is open: nothing else
ends it but a rotation of the key twice over.

The token is a capability: whoever holds it may acknowledge (or resolve) that incident as that
person, which is what a link in a page is for. It is signed, not hidden (the person paged can
read their own address in it), and never written to a log, a metric or the history.
"""

from __future__ import annotations

from typing import Final

import attrs
import msgspec

from pagerd.access.keys import SigningKeys

PURPOSE: Final = "link"
VERSION: Final = 1
MAX_TOKEN: Final = 2048
"""Characters of a token at most: longer is not one of ours, and is not even decoded."""
ACTIONS: Final = ("ack", "resolve")


@attrs.frozen
class Link:
    """What a token says: the incident (service, number, when it opened) and who was paged."""

    service: str
    incident: int
    opened_at: float
    by: str

    def token(self, keys: SigningKeys) -> str:
        payload = msgspec.json.encode(
            [VERSION, self.service, self.incident, self.opened_at, self.by]
        )
        return keys.token(PURPOSE, payload)

    @classmethod
    def open(cls, keys: SigningKeys, token: str) -> Link | None:
        """The link a `token` of ours says, or None if it is not one (tampered with, made for
        another purpose, signed by a key rotated out, or not a token at all)."""
        if len(token) > MAX_TOKEN:
            return None
        payload = keys.open(PURPOSE, token)
        if payload is None:
            return None
        try:
            version, service, incident, opened_at, by = msgspec.json.decode(
                payload, type=tuple[int, str, int, float, str]
            )
        except (msgspec.DecodeError, ValueError):
            return None  # signed by us, so a layout of a later pagerd: not one this one reads
        if version != VERSION:
            return None
        return cls(service, incident, opened_at, by)


def url(public_url: str, action: str, token: str) -> str:
    """The address of `action` (`ack`, `resolve`) with `token`, under `public_url`."""
    return f"{public_url.rstrip('/')}/{action}/{token}"
