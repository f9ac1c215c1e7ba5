"""Keeping history for `daemon.keep_history`, no longer: the database stops growing for ever.

Every counted alert of a storm is a row, and pagerd never needed to forget one, so a deployment's
database grew for its whole life, and with it the disk it takes and the check that reads all of
it at every start. With `keep_history` set, a pass soon after start and then every hour deletes
incidents closed longer ago than that, with their events, notifications and deliveries (see
`Storage.prune` for what is always kept). Each transaction is short (500 rows, about 7 ms here),
waits its turn for the one writer like a commit does, and is followed by a rest as long, so
pages and replies are not held up behind a large deletion.

SQLite reuses the freed pages; the file itself does not shrink (`VACUUM` it while pagerd is
stopped for that).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Final

import trio

from pager.timefmt import isoformat
from pagerd.operations.metrics import Metrics
from pagerd.storage.offload import Offload
from pagerd.storage.port import Storage, StoreError
from pagerd.timing.clock import Clock

log = logging.getLogger("pagerd.retention")

FIRST_PASS_AFTER: Final = 60.0  # after start: a restart's overdue escalations go first
PASS_EVERY: Final = 3600.0


async def keep_history(
    store: Storage,
    offload: Offload,
    clock: Clock,
    keep: Callable[[], float | None],
    metrics: Metrics | None = None,
) -> None:
    """Prune history older than `keep()` (read at each pass, so a reload applies) until
    cancelled; None keeps everything."""
    await trio.sleep(FIRST_PASS_AFTER)
    while True:
        seconds = keep()
        if seconds is not None:
            try:
                await prune(store, offload, clock.now() - seconds, metrics)
            except Exception:
                # A bug here must not take paging down with it: reported, tried again next pass.
                log.exception("pruning history failed, retried in %.0fs", PASS_EVERY)
        await trio.sleep(PASS_EVERY)


async def prune(
    store: Storage, offload: Offload, before: float, metrics: Metrics | None = None
) -> int:
    """One pass over the incidents closed before `before`; how many were deleted. A failing
    transaction (a full disk, say) ends the pass with an error logged: the next pass retries."""
    resume: tuple[float, int] | None = (-math.inf, 0)
    incidents = rows = 0
    while resume is not None:
        started = trio.current_time()
        try:
            pruned = await offload(partial(store.prune, before, resume))
        except StoreError as exc:
            log.error("pruning history failed, retried in %.0fs: %s", PASS_EVERY, exc)
            break
        incidents += pruned.incidents
        rows += pruned.rows
        if metrics is not None:
            metrics.pruned.inc(by=pruned.incidents)
        resume = pruned.resume
        # Rest as long as that took: in a storm, commits have the writer at least half the time.
        await trio.sleep(trio.current_time() - started)
    if rows:
        log.info(
            "pruned history closed before %s: incidents=%d rows=%d",
            isoformat(before), incidents, rows,
        )  # fmt: skip
    return incidents
