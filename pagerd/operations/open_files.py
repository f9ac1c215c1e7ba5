"""The open-file limit: raised as far as allowed at the start, and what it leaves for clients.

Every socket client, metrics scraper, delivery's connection and the database's files take a
file descriptor; past the limit (1024 by default under systemd, unless the unit sets
`LimitNOFILE=`) accepts fail, and so do deliveries. So pagerd raises its soft limit to the hard
one, as Go programs do, and serves no more socket clients at once than leaves `RESERVE` free
for everything else: a client past that gets `busy` at once, rather than waiting unaccepted.
"""

from __future__ import annotations

import logging
import resource
import sys
from typing import Final

log = logging.getLogger("pagerd.open_files")

METRICS_CONNECTIONS: Final = 32
"""Connections the metrics server serves at once (a scraper needs one or two)."""
RESERVE: Final = 128
"""Beside the socket clients and the metrics server's: the database, its WAL and shared memory,
the deliveries' connections, the log file, Trio's own."""
CEILING: Final = 1 << 20  # when the hard limit is unlimited


def raise_limit() -> int:
    """Raise the soft limit on open files to the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    target = CEILING if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft
        return target
    return soft


def client_room(limit: int, deliveries: int = 0, http: int = 0) -> int:
    """How many socket clients fit in `limit` open files, with the rest's share kept free:
    `deliveries` is how many connections to providers may be open at once, `http` how many the
    HTTP front door serves at once (`http.max_connections`, when it listens)."""
    return max(1, limit - RESERVE - METRICS_CONNECTIONS - deliveries - http)
