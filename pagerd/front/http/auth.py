"""Who is sending: the integration whose key a request presents, compared in constant time.

The key comes in an `Authorization: Bearer KEY` header or, for senders that can only be given a
URL, as the last segment of the path. Every integration of the type asked for is compared,
whether or not an earlier one matched, so the time taken does not tell which key came close.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from pagerd.config.http import Integration


def bearer(headers: Mapping[str, str]) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, if there is one."""
    scheme, _, key = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def authenticate(
    integrations: Iterable[Integration], kind: str, key: str | None
) -> Integration | None:
    """The integration of type `kind` whose key is `key`; None if none is (or no key)."""
    if key is None:
        return None
    presented = key.encode("utf-8", "surrogateescape")
    found: Integration | None = None
    for integration in integrations:
        if integration.type != kind:
            continue
        if hmac.compare_digest(presented, integration.key.value.encode("utf-8")):
            found = integration
    return found
