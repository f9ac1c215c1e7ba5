"""Inbox puts/s on a PostgreSQL server: one transaction per event (`Cluster.put`) against
batches (`Cluster.put_many`, what the inbox sender does with events routed together), from one
and four threads. Run from the repository: `PYTHONPATH=. .venv/bin/python bench/inbox_puts.py`
(it makes, and drops, a database of its own through tests/postgres.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pagerd.storage.postgresql.store import Store
from tests import postgres

N = 4000
SERVICES = [f"svc{i}" for i in range(64)]
EVENT = b"x" * 200  # about an encoded alert's size


def measure(label: str, threads: int, work: Callable[[int], None]) -> None:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    took = time.perf_counter() - started
    print(f"{label}: {N / took:,.0f} puts/s ({took:.2f} s for {N})")


def main() -> None:
    with postgres.migrated() as dsn:
        store = Store.open(dsn, node="bench", pool_size=4)
        try:
            for threads in (1, 4):
                per = N // threads

                def one(k: int, per: int = per) -> None:
                    for i in range(per):
                        store.put("bench", SERVICES[(k * per + i) % 64], EVENT, 1.0)

                measure(f"put, a transaction each, {threads} thread(s)", threads, one)
                for size in (10, 50):

                    def many(k: int, per: int = per, size: int = size) -> None:
                        for j in range(0, per, size):
                            items = [
                                (SERVICES[(k * per + j + i) % 64], EVENT, 1.0) for i in range(size)
                            ]
                            store.put_many("bench", items)

                    measure(f"put_many, batches of {size}, {threads} thread(s)", threads, many)
        finally:
            store.close()


if __name__ == "__main__":
    main()
