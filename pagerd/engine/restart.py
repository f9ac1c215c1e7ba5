"""What a start does with the stored state before anything reads a deadline.

The stored deadlines and retry times are moved into this run's frame when the clocks say the
wall clock stepped since the last record (see `pagerd.timing.clock`), in one transaction of the
store, and this run's reading is recorded.
"""

from __future__ import annotations

import logging
from functools import partial

from pager.domain import ServiceState
from pagerd.storage.offload import Offload
from pagerd.storage.port import Storage
from pagerd.timing.clock import Clock

log = logging.getLogger("pagerd.clock")  # the name these lines had when this was in clock.py


async def restart(
    clock: Clock, store: Storage, offload: Offload, states: dict[str, ServiceState]
) -> dict[str, ServiceState]:
    """At start, with the database checked and `states` loaded: move the stored deadlines into
    this run's frame if the clocks say so (see `shift`), record this run's reading, and return
    the states as they now stand."""
    reading = clock.reading()
    last, moved = await offload(partial(store.restart_clock, reading))
    rebooted = last is not None and last.boot_id is not None and last.boot_id != reading.boot_id
    if rebooted and last is not None and reading.wall < last.wall:
        log.warning(
            "the wall clock reads %.0fs earlier than at the last record before this boot: "
            "if it is wrong, escalations wait that much longer (see time-sync.target)",
            last.wall - reading.wall,
        )
    if moved == 0.0:
        return states
    log.warning(
        "the stored times were %+.1fs off the wall clock (it stepped while pagerd was stopped, "
        "or while it ran): open escalations and retries moved by that, keeping the time they "
        "had left",
        moved,
    )
    return await offload(store.load_states)
