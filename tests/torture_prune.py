"""The kill -9 torture test of history pruning (`daemon.keep_history`).

A database of many services' incidents (old and recent, open and closed, storm incidents of
thousands of events that take many transactions to delete, notifications in every state) is
pruned by `retention.prune`, the daemon's own pass, in a child process that is killed with
`kill -9` in the middle of the pass. The kill lands on a point of progress the child reports,
not on a guess of how long the pass takes (which held on one machine and not on another): the
child prints a marker and waits for a go-ahead after each incident it deletes rows of (inside
the transaction, not yet committed) and after each committed transaction, and the parent kills
it at a marker chosen at random. After every kill, from the database as a restarted pagerd
would find it:

- it opens (the start-up integrity check passes);
- what a restart loads is what it was before any pruning (every service's number and open
  incident), and so is the outbox's work (every undelivered notification);
- every incident that must be kept (a service's latest, open, recent, or with a notification
  still to deliver) has every one of its rows;
- no event, notification or delivery attempt is left whose incident is gone.

At the end, a last pass runs to completion: exactly the incidents that may go are gone, and
`PRAGMA integrity_check` is ok.

    .venv/bin/python -m tests.torture_prune --rounds 40      # the long run
    (the test suite runs a quick one: tests/test_torture.py)
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import trio

from pagerd.storage import retention
from pagerd.storage.offload import inline
from pagerd.storage.port import Pruned
from pagerd.storage.sqlite.store import Store
from tests.history import incident
from tests.torture import verdict

CUTOFF = 1_000_000.0  # prune what closed before this
MARKERS = 12  # a kill lands at one of the first this many markers of a pass
ROOT = Path(__file__).resolve().parent.parent


@attrs.define
class Report:
    rounds: int = 0
    killed_mid_pass: int = 0
    pruned: int = 0
    kept: int = 0
    problems: list[str] = attrs.Factory(list)

    def summary(self) -> str:
        return (
            f"{self.rounds} kill -9 rounds ({self.killed_mid_pass} in the middle of a pass), "
            f"{self.pruned} incidents pruned, {self.kept} kept, {len(self.problems)} problems"
        )


Key = tuple[str, int]


def build(db: Path, services: int, rng: random.Random) -> tuple[set[Key], dict[Key, list[int]]]:
    """A history to prune: (the incidents that may go, rows of each that must stay)."""
    prunable: set[Key] = set()
    kept: dict[Key, list[int]] = {}
    with closing(Store.open(db)) as store, store._transaction():
        for s in range(services):
            service = f"svc-{s}"
            latest = rng.randint(1, 6)
            for number in range(1, latest + 1):
                open_ = number == latest and rng.random() < 0.3
                closed_at = None if open_ else rng.choice([1000.0, CUTOFF - 1, CUTOFF, 2 * CUTOFF])
                # Most incidents are small; a storm's takes many transactions of 500 rows.
                events = rng.choice([0, 1, 5, 40, 300]) if rng.random() < 0.9 else 2000
                states = rng.choices(
                    ["sent", "failed", "pending", "retrying"], [8, 2, 1, 1], k=rng.randint(0, 4)
                )
                attempts = rng.randint(0, 3)
                incident(store, service, number, closed_at, events, tuple(states), attempts)
                may_go = (
                    number != latest
                    and closed_at is not None
                    and closed_at < CUTOFF
                    and not {"pending", "retrying"} & set(states)
                )
                key = (service, number)
                if may_go:
                    prunable.add(key)
                else:
                    kept[key] = [1, events, len(states), len(states) * attempts]
    return prunable, kept


def rows(conn: sqlite3.Connection) -> dict[Key, list[int]]:
    """Every incident's rows: [incident, events, notifications, delivery attempts]. An incident
    with rows left but its own row gone shows with a 0 first."""
    found: dict[Key, list[int]] = {}

    def add(column: int, sql: str) -> None:
        for service, number, count in conn.execute(sql):
            found.setdefault((service, number), [0, 0, 0, 0])[column] = count

    add(0, "SELECT service, number, 1 FROM incidents")
    add(1, "SELECT service, incident, COUNT(*) FROM events GROUP BY 1, 2")
    add(2, "SELECT service, incident, COUNT(*) FROM notifications GROUP BY 1, 2")
    add(
        3,
        "SELECT n.service, n.incident, COUNT(*) FROM delivery_attempts a"
        " JOIN notifications n ON n.id = a.notification GROUP BY 1, 2",
    )
    orphans = conn.execute(
        "SELECT COUNT(*) FROM delivery_attempts WHERE notification NOT IN"
        " (SELECT id FROM notifications)"
    ).fetchone()[0]
    if orphans:
        found[("(delivery attempts of no notification)", 0)] = [0, 0, 0, orphans]
    return found


def what_a_restart_loads(store: Store) -> object:
    """Every service's state, and the outbox's work: what pagerd reads from the database."""
    return store.load_states(), store.undelivered(10**6)


def check(db: Path, prunable: set[Key], kept: dict[Key, list[int]], before: object) -> list[str]:
    """What must hold after any kill."""
    try:
        store = Store.open(db)
    except Exception as exc:  # the check is what is reported, whatever broke
        return [f"the database does not open: {exc}"]
    with closing(store):
        problems = []
        if what_a_restart_loads(store) != before:
            problems.append("a restart would load other states or another outbox")
        found = rows(store._conn)
    for key, expected in kept.items():
        if found.get(key) != expected:
            problems.append(f"{key[0]}#{key[1]} must be kept whole: {found.get(key)} of {expected}")
    for key, left in found.items():
        if key not in kept and key not in prunable:
            problems.append(f"{key[0]}#{key[1]}: rows of no incident of the history: {left}")
        elif left[0] == 0:
            problems.append(f"{key[0]}#{key[1]}: its row is gone, these are left: {left}")
    return problems


def run(folder: Path, rounds: int, services: int, seed: int) -> Report:
    rng = random.Random(seed)
    db = folder / "pager.db"
    prunable, kept = build(db, services, rng)
    with closing(Store.open(db)) as store:
        before = what_a_restart_loads(store)
    report = Report(kept=len(kept))
    for _ in range(rounds):
        with subprocess.Popen(
            [sys.executable, "-m", "tests.torture_prune", "--child", str(db)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            assert child.stdin is not None and child.stdout is not None
            kill_at = rng.randint(1, MARKERS)
            line = child.stdout.readline()  # "pruning": the store is open, the pass begins
            for seen in range(1, kill_at + 1):
                line = child.stdout.readline()
                if line not in MARKED:
                    break  # done (the pass ended first), or the child died
                if seen < kill_at:
                    child.stdin.write("go\n")
                    child.stdin.flush()
            child.kill()
            child.wait()
            report.killed_mid_pass += line in MARKED
        report.rounds += 1
        report.problems += check(db, prunable, kept, before)
        if report.problems:
            return report
    with closing(Store.open(db)) as store:
        prune_all(store)
        found = rows(store._conn)
        report.pruned = len(prunable - found.keys())
        integrity = store._conn.execute("PRAGMA integrity_check").fetchone()[0]
    report.problems += check(db, prunable, kept, before)
    if prunable & found.keys():
        report.problems.append(f"{len(prunable & found.keys())} incidents that may go are left")
    if integrity != "ok":
        report.problems.append(f"integrity_check: {integrity}")
    return report


def prune_all(store: Store) -> int:
    """One pass of the daemon's own pruning, to its end."""
    return trio.run(retention.prune, store, inline, CUTOFF)


MARKED = {"deleting\n", "committed\n"}


def _marker(name: str) -> None:
    """Tell the parent how far the pass is, and wait for its go-ahead (or its kill -9)."""
    print(name, flush=True)
    sys.stdin.readline()


class _Marked(Store):
    """The store, reporting each point of progress of a pass to the parent."""

    def prune(self, *args: Any, **kwargs: Any) -> Pruned:
        pruned = super().prune(*args, **kwargs)
        _marker("committed")
        return pruned

    def _prune_incident(self, service: str, number: int, budget: int) -> int | None:
        deleted = super()._prune_incident(service, number, budget)
        if deleted != 0:  # rows deleted, in the transaction not yet committed
            _marker("deleting")
        return deleted


def child(db: Path) -> int:
    with closing(_Marked.open(db)) as store:
        print("pruning", flush=True)
        prune_all(store)
    print("done", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="kill -9 torture test of history pruning")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child)
    with tempfile.TemporaryDirectory(prefix="pagerd-torture-prune-") as folder:
        report = run(Path(folder), args.rounds, args.services, args.seed)
    return verdict(args.seed, report.summary(), report.problems)


if __name__ == "__main__":
    sys.exit(main())
