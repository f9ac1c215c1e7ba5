"""Metrics in the Prometheus text format, kept in memory and rendered on demand.

Counters and histograms are updated where things happen; gauges (open incidents, actors, ...)
are read from their owners at scrape time, so they can never drift from the truth.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Final

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


Reading = Mapping[tuple[str, ...], float]
"""A labelled gauge's reading: each series' label values, and its value."""


def _unwatched() -> None:
    pass


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = name, help, labels
        self._values: dict[tuple[str, ...], float] = {}
        self.changed: Callable[[], None] = _unwatched
        """Told after each increment: a front process sends its HTTP counts to the core then."""

    def inc(self, *values: str, by: float = 1.0) -> None:
        self._values[values] = self._values.get(values, 0.0) + by
        self.changed()

    def zero(self, *series: tuple[str, ...]) -> None:
        """Export each of `series` (its label values) at 0 before anything is counted: a
        series that appears with its first increment is missed by Prometheus' `increase()`."""
        for values in series:
            self._values.setdefault(values, 0.0)

    def value(self, *values: str) -> float:
        return self._values.get(values, 0.0)

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        """Every series counted so far (its label values), with its value."""
        return list(self._values.items())

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.labels and not self._values:
            yield f"{self.name} 0"  # nothing counted yet is 0, not an absent series
        for values, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labels, values)} {_number(value)}"


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help, buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, count in zip((*self.buckets, math.inf), self._counts, strict=True):
            running += count
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {running}'
        yield f"{self.name}_sum {_number(self._sum)}"
        yield f"{self.name}_count {running}"


class Metrics:
    def __init__(self) -> None:
        self.events = Counter(
            "pagerd_events_total", "Requests received, by op and result.", ("op", "result")
        )
        self.notifications = Counter(
            "pagerd_notifications_total",
            "Delivery attempts, by channel and outcome (sent, retrying, failed, cancelled).",
            ("channel", "outcome"),
        )
        self.commit_seconds = Histogram(
            "pagerd_store_commit_seconds", "Time to commit one group of writes.", LATENCY_BUCKETS
        )
        self.commit_failures = Counter(
            "pagerd_store_commit_failures_total",
            "Group commits that failed (SQLite: disk full, an I/O error; PostgreSQL: the database"
            " unreachable, too slow or failing over): their events were refused,"
            " their escalations retried.",
        )
        self.commit_batch = Histogram(
            "pagerd_store_commit_batch_size", "Writes committed together.", SIZE_BUCKETS
        )
        self.delivery_seconds = Histogram(
            "pagerd_delivery_latency_seconds",
            "From the decision to notify to the provider's acceptance.",
            LATENCY_BUCKETS,
        )
        self.pruned = Counter(
            "pagerd_history_pruned_incidents_total",
            "Closed incidents deleted with their history, past daemon.keep_history.",
        )
        self.heartbeats_missed = Counter(
            "pagerd_heartbeats_missed_total",
            "Heartbeat check-ins missed: each an alert for its service (services.X.heartbeat).",
        )
        self.outbox_errors = Counter(
            "pagerd_outbox_errors_total",
            "Unexpected errors in delivery's own tasks (a bug), contained and retried, by task.",
            ("task",),
        )
        self.http_requests = Counter(
            "pagerd_http_requests_total",
            "HTTP requests answered, by route (its pattern, never a key) and status code.",
            ("route", "code"),
        )
        self.http_auth_failures = Counter(
            "pagerd_http_auth_failures_total",
            "HTTP requests refused for a missing or wrong key, by the integration type asked for"
            " (or a provider's bad signature: twilio, slack).",
            ("integration_type",),
        )
        self.http_events_refused = Counter(
            "pagerd_http_events_refused_total",
            "Alerts of an integration's payload refused on their own (the others were processed),"
            " by integration and reason: bad_fingerprint, no_service_label, not_in_services,"
            " unknown_service.",
            ("integration", "reason"),
        )
        self.levels_unreached = Counter(
            "pagerd_levels_unreached_total",
            "Escalation levels that had nobody to notify when notified (a schedule with nobody on"
            " call): each recorded in the incident's history and skipped at once.",
        )
        self.overrides_ignored = Counter(
            "pagerd_overrides_ignored_total",
            "Overrides in force when a schedule was resolved to page it, but ignored: the person"
            " they put on call is no longer in [people] (the rotation's person was paged)."
            " Remove them: pager override remove ID.",
        )
        self.http_fronts_replaced = Counter(
            "pagerd_http_fronts_replaced_total",
            "HTTP front processes that exited unasked (a crash, a kill) and were replaced.",
        )
        self.http_fronts_hung = Counter(
            "pagerd_http_fronts_hung_total",
            "HTTP front processes that answered no ping within its bound twice in a row: killed"
            " and replaced (also counted in pagerd_http_fronts_replaced_total).",
        )
        self.stale_firings = Counter(
            "pagerd_stale_firings_total",
            "Firing alerts taken as copies of an earlier firing of one already resolved (their"
            " startsAt before the one it resolved with): they paged nobody. By integration.",
            ("integration",),
        )
        self.worker_restarts = Counter(
            "pagerd_delivery_worker_restarts_total",
            "Delivery worker processes started again after one died or hung.",
        )
        self.worker_deaths = Counter(
            "pagerd_delivery_worker_deaths_total",
            "Delivery worker processes that ended unasked, by reason (died, or hung: killed "
            "for not answering within a send's timeout).",
            ("reason",),
        )
        self.worker_ambiguous_sends = Counter(
            "pagerd_delivery_ambiguous_sends_total",
            "Sends in progress in a delivery worker that died or hung: their outcome unknown, "
            "retried with the same idempotency key, by channel.",
            ("channel",),
        )
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []
        self._counters: list[Counter] = []
        self._labelled: list[tuple[str, str, tuple[str, ...], Callable[[], Reading]]] = []

    def counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
        """A counter of a part that exists only in some daemons (the cluster's): rendered
        with the others once made."""
        counter = Counter(name, help, labels)
        self._counters.append(counter)
        return counter

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._gauges.append((name, help, read))

    def gauges(
        self, name: str, help: str, labels: tuple[str, ...], read: Callable[[], Reading]
    ) -> None:
        """A gauge with labels: `read` gives each series' label values and value."""
        self._labelled.append((name, help, labels, read))

    def render(self) -> str:
        lines: list[str] = []
        for name, help, read in self._gauges:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {_number(read())}"]
        for name, help, labels, many in self._labelled:
            lines += [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
            lines += [
                f"{name}{_labels(labels, values)} {_number(value)}"
                for values, value in sorted(many().items())
            ]
        rendered: tuple[Counter | Histogram, ...] = (
            self.events,
            self.notifications,
            self.commit_seconds,
            self.commit_failures,
            self.commit_batch,
            self.delivery_seconds,
            self.pruned,
            self.heartbeats_missed,
            self.outbox_errors,
            self.http_requests,
            self.http_auth_failures,
            self.http_events_refused,
            self.levels_unreached,
            self.overrides_ignored,
            self.http_fronts_replaced,
            self.http_fronts_hung,
            self.stale_firings,
            self.worker_restarts,
            self.worker_deaths,
            self.worker_ambiguous_sends,
            *self._counters,
        )
        for metric in rendered:
            lines += metric.render()
        return "\n".join(lines) + "\n"
