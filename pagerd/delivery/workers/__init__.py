"""Delivery workers: the sending itself, in processes of their own, off the loop that decides.

In: sends handed over by the outbox, each through a lane's transport (`WorkerPool.lane`, a
`Transport`); channels (with their secrets), and what pages are worded with (the templates,
`http.public_url`, the signing keys), over the workers' pipes, never in arguments or the
environment; with each send, what needs the daemon's state (an SMS's reply code, stored
first). Out: each send's outcome (sent and the provider's id, try again, give up) back to the
outbox, which records it as it records any; a worker that dies or hangs mid-send gives the
outcome "unknown", a transient failure retried with the same idempotency key. It never holds a
notification's state, never sends without the outbox asking, and never lets one channel's slow
provider hold up another's sends.
"""

from pagerd.delivery.workers.pool import WorkerPool, WorkerStatistics, default_workers

__all__ = ["WorkerPool", "WorkerStatistics", "default_workers"]
