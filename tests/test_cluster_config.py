"""`[cluster]` (`pagerd.config.cluster`): refused with SQLite, its keys checked with a shared
store. The shared store's `[storage]` table is the PostgreSQL adapter's; its `backend` is read
here from the file as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pagerd.config.cluster import backend_of, build_cluster, host_name
from pagerd.config.model import _section
from tests.harness import CHANNELS, ONCALL, errors_of

SERVICES = '\n[services.api]\npolicy = "oncall"\n'


def test_a_cluster_table_with_sqlite_is_an_error_that_says_why(tmp_path: Path) -> None:
    text = CHANNELS + ONCALL + SERVICES + '\n[cluster]\nnode_name = "a"\n'
    errors = errors_of(tmp_path, text)
    assert any(
        e.startswith("cluster: only meaningful with a store several nodes share") for e in errors
    ), errors


def shared(value: Any) -> tuple[Any, list[str]]:
    return build_cluster(value, "postgresql", _section)


def test_with_a_shared_store_the_defaults_are_the_host_name_and_ten_seconds() -> None:
    cluster, errors = shared(None)
    assert errors == [] and cluster is not None
    assert cluster.node_name == host_name() and cluster.lease_ttl == 10.0
    cluster, errors = shared({"node_name": "pagerd-2", "lease_ttl": "30s"})
    assert errors == [] and cluster is not None
    assert (cluster.node_name, cluster.lease_ttl) == ("pagerd-2", 30.0)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"lease_ttl": "1s"}, "cluster.lease_ttl: 1s is out of bounds: from 2s to 5m"),
        ({"lease_ttl": "10m"}, "cluster.lease_ttl: 10m is out of bounds: from 2s to 5m"),
        ({"node_name": "a b"}, "cluster.node_name: 'a b' is not a node name"),
        ({"nodes": 3}, "cluster.nodes: unknown key"),
    ],
)
def test_bad_cluster_keys_are_named(value: dict[str, Any], error: str) -> None:
    cluster, errors = shared(value)
    assert cluster is None
    assert any(e.startswith(error) for e in errors), errors


def test_the_backend_is_read_from_the_storage_table_as_written() -> None:
    assert backend_of({}) == "sqlite"
    assert backend_of({"storage": {"backend": "postgresql"}}) == "postgresql"
    assert backend_of({"storage": "nonsense"}) == "sqlite"
