"""Which config is running, and whether the last reload took: what an operator checks after
editing the file, in `ping` and `status` replies and in the metrics (named as Prometheus and
Alertmanager name theirs, so the same alert rule fits)."""

from __future__ import annotations

from typing import Any, Final

import attrs

from pager.timefmt import isoformat
from pagerd.operations.metrics import Metrics

SHORT_HASH: Final = 12  # hex digits: enough to tell two versions of one file apart


@attrs.define
class ConfigRecord:
    sha256: str
    """Of the running config file's bytes."""
    loaded_at: float
    last_reload_at: float | None = None
    last_reload_ok: bool = True  # a start counts as a successful load, as in Prometheus
    keys_problem: str | None = None
    """Why the last reload could not read the signing keys (`pagerd rotate-key` left a file
    pagerd cannot read, say): pagerd signs with the keys it read before, and the next start
    would fail. None: read (a start that cannot read them does not start)."""

    def loaded(self, sha256: str, at: float) -> None:
        self.sha256, self.loaded_at = sha256, at
        self.last_reload_at, self.last_reload_ok = at, True

    def rejected(self, at: float) -> None:
        self.last_reload_at, self.last_reload_ok = at, False

    def keys_read(self, problem: str | None) -> None:
        """The outcome of reading the signing keys again at a reload: None, read."""
        self.keys_problem = problem

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "sha256": self.sha256[:SHORT_HASH],
            "loaded_at": isoformat(self.loaded_at),
            "last_reload": None
            if self.last_reload_at is None
            else {"at": isoformat(self.last_reload_at), "ok": self.last_reload_ok},
        }
        if self.keys_problem is not None:  # only then: what was there before stays as it was
            described["signing_keys"] = {"ok": False, "error": self.keys_problem}
        return described

    def export(self, metrics: Metrics) -> None:
        metrics.gauge(
            "pagerd_config_last_reload_successful",
            "Whether the last config reload (or the start) succeeded: 1 or 0.",
            lambda: 1.0 if self.last_reload_ok else 0.0,
        )
        metrics.gauge(
            "pagerd_signing_keys_readable",
            "Whether the signing keys' file could be read at the last reload (or the start):"
            " 1 or 0. At 0 pagerd signs with the keys read before, and the next start fails.",
            lambda: 1.0 if self.keys_problem is None else 0.0,
        )
        metrics.gauge(
            "pagerd_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (start or successful reload), in Unix seconds.",
            lambda: self.loaded_at,
        )
