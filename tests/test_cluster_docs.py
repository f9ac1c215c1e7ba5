"""The cluster's deployment guide (docs/cluster.md) and its shipped example stay true: the
example is one node's valid config (pagerd's own loader, then the real `pagerd --check` against a
real migrated PostgreSQL), the DSNs shown are ones libpq takes, the timings table is the code's
constants, and the metrics and `pager status` fields it tells operators to watch are those
pagerd has.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Final, cast

import attrs
import pytest
import trio

from pager import cli
from pager.shards import SHARDS
from pagerd.config import load
from pagerd.config.cluster import DEFAULT_LEASE_TTL, MAX_LEASE_TTL, MIN_LEASE_TTL, host_name
from pagerd.config.storage import describe, parse_dsn
from pagerd.engine import inbox
from pagerd.engine.actors import Services
from pagerd.engine.inbox import Inbox, SharedStore
from pagerd.engine.ownership import MIN_MARGIN, RETRY_AFTER_FAILURE, Ownership, margin_of
from pagerd.front.server import _cluster, _owner
from pagerd.operations.metrics import Metrics
from pagerd.storage.offload import inline
from pagerd.storage.postgresql.schema import SCHEMA_VERSION
from pagerd.timing.clock import Clock
from tests import postgres
from tests.fake_cluster import FakeCluster
from tests.processes import PAGERD

ROOT: Final = Path(__file__).resolve().parent.parent
GUIDE: Final = ROOT / "docs" / "cluster.md"
EXAMPLE: Final = ROOT / "config" / "pager.cluster.example.toml"
SHOWN: Final = "/etc/pager/pager.toml"
"""Where the guide has the config: its outputs name that path."""


def _credentials(folder: Path, dsn: str) -> Path:
    """The credentials the example names, as `LoadCredential=` would give them."""
    folder.mkdir(exist_ok=True)
    secrets = {
        "pagerd-dsn": dsn,
        "smtp-password": "the SMTP password",
        "twilio-token": "the Twilio auth token",
        "alertmanager.key": "0f3c9a1b27de4c5a8e6f0b1d2c3a4e5f",
    }
    for name, value in secrets.items():
        (folder / name).write_text(value + "\n")
    return folder


def _block_after(text: str, after: str) -> str:
    """The first fenced block after the paragraph that ends with `after`."""
    found = re.search(re.escape(after) + r"\n\n *```\w*\n(.*?)```", text, re.DOTALL)
    assert found is not None, f"no block after {after!r} in {GUIDE.name}"
    return found.group(1)


def _guide_dsn() -> str:
    return _block_after(GUIDE.read_text(), "Patroni's REST API `/primary`). In full:").strip()


# The example. ---------------------------------------------------------------------------------


def test_the_example_is_a_node_of_a_cluster_that_differs_from_the_others_by_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _credentials(tmp_path / "credentials", _guide_dsn().replace("...", "pw"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = EXAMPLE.read_text()
    node = load(EXAMPLE)
    assert node.storage.backend == "postgresql"
    assert node.cluster is not None
    assert node.cluster.node_name == "pagerd-1"
    assert node.cluster.lease_ttl == DEFAULT_LEASE_TTL
    # The other nodes': the marked line changed, nothing else.
    assert text.count('node_name = "pagerd-1"') == 1
    for name in ("pagerd-2", "pagerd-3"):
        other = tmp_path / f"{name}.toml"
        other.write_text(text.replace('node_name = "pagerd-1"', f'node_name = "{name}"'))
        loaded = load(other)
        assert loaded.cluster is not None and loaded.cluster.node_name == name
        same = attrs.evolve(loaded, path=node.path, cluster=node.cluster, sha256=node.sha256)
        assert same == node
    # Without the line: the host's name, and the file is the same on every node.
    unnamed = tmp_path / "unnamed.toml"
    unnamed.write_text(re.sub(r'(?m)^node_name = "pagerd-1".*\n', "", text))
    loaded = load(unnamed)
    assert loaded.cluster is not None and loaded.cluster.node_name == host_name()


def test_the_example_passes_pagerd_check_against_a_migrated_database(tmp_path: Path) -> None:
    """The real program, as step 5 runs it; its output is the one the guide shows."""
    with postgres.migrated() as dsn:
        # The guide's connection settings on the test server's DSN.
        shown = parse_dsn(_guide_dsn(), lambda m: pytest.fail(m))
        extra = {k: v for k, v in shown.items() if k.startswith(("target_", "tcp_", "keepalive"))}
        creds = _credentials(
            tmp_path / "credentials", dsn + "".join(f" {k}={v}" for k, v in extra.items())
        )
        env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
        done = subprocess.run(
            [*PAGERD, "--check", "--config", str(EXAMPLE), "--credentials", str(creds)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    documented = _block_after(
        GUIDE.read_text(),
        "pagerd --check --config /etc/pager/pager.toml --credentials /etc/pager/credentials\n```",
    )
    assert done.stdout == documented.replace(SHOWN, str(EXAMPLE))


def test_a_database_not_yet_migrated_fails_the_check_of_the_example(tmp_path: Path) -> None:
    with postgres.empty() as dsn:
        creds = _credentials(tmp_path / "credentials", dsn)
        env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
        done = subprocess.run(
            [*PAGERD, "--check", "--config", str(EXAMPLE), "--credentials", str(creds)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    assert done.returncode == 1
    assert "run `pagerd migrate`" in done.stderr


def test_the_dsns_shown_are_ones_libpq_takes_and_lead_to_the_primary() -> None:
    text = GUIDE.read_text()
    credential = re.search(r"pagerd-dsn <<< '([^']*)'", text)
    assert credential is not None
    for dsn in (_guide_dsn(), credential.group(1)):
        params = parse_dsn(dsn, pytest.fail)
        assert params["target_session_attrs"] == "read-write"
        assert len(params["host"].split(",")) == 3
        # pagerd's own link settings, which the guide's timings assume (an operator found them
        # at 10 s in the DSN shown, against the 5 s of the timings).
        assert "tcp_user_timeout" not in params and "keepalives_idle" not in params
    # The example's comment says the same.
    comment = " ".join(
        line.removeprefix("#").strip()
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith("#   ")
    )
    assert parse_dsn(comment, lambda m: pytest.fail(m)) == parse_dsn(_guide_dsn(), pytest.fail)


def test_the_migrate_output_shown_is_what_it_prints() -> None:
    shown = _block_after(
        GUIDE.read_text(),
        "pagerd migrate --config /etc/pager/pager.toml --credentials /etc/pager/credentials\n```",
    )
    credential = re.search(r"pagerd-dsn <<< '([^']*)'", GUIDE.read_text())
    assert credential is not None
    where = describe(credential.group(1))
    assert shown == f"pagerd migrate: {where}: schema made, version {SCHEMA_VERSION}\n"


# The numbers. ---------------------------------------------------------------------------------


def _timings() -> dict[str, tuple[str, str]]:
    section = GUIDE.read_text().split("## The timings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (.+?) \| (.+?) \|$", section, re.MULTILINE)
    return {what: (formula, value) for what, formula, value in rows[2:]}


def test_the_timings_table_is_the_code_s() -> None:
    ttl = DEFAULT_LEASE_TTL
    margin = margin_of(ttl)
    expected = {
        "a node renews its leases every": ("T/4", ttl / 4),
        "the margin": (f"max({MIN_MARGIN:g} s, T/5)", margin),
        "a node stops deciding and sending for a shard, after the claim that last renewed it"
        " was sent": ("T - margin", ttl - margin),
        "the database gives the shard to another node, after that claim arrived": ("T", ttl),
        "a node whose lease round failed tries again, after the failure, every (an attempt on a"
        " database that hangs first waits up to `connect_timeout`, 5 s by default, for a"
        " connection)": (
            f"min({RETRY_AFTER_FAILURE:g} s, T/4)",
            min(RETRY_AFTER_FAILURE, ttl / 4),
        ),
        "a shard that nobody took is taken by any node after": ("T/2", ttl / 2),
        "a client whose event went to the inbox waits for the owner's answer at most (then"
        ' `"queued": true`)': (f"{inbox.SENDER_WAIT:g} s", inbox.SENDER_WAIT),
        "the owner reads the inbox when no notification came, every": (
            f"{inbox.POLL:g} s",
            inbox.POLL,
        ),
    }
    shown = _timings()
    assert set(shown) == set(expected)
    for what, (formula, seconds) in expected.items():
        assert shown[what] == (formula, f"{seconds:g} s"), what
    text = GUIDE.read_text()
    assert f"10 s by default; {MIN_LEASE_TTL:g} s to {MAX_LEASE_TTL / 60:g} min" in text
    assert DEFAULT_LEASE_TTL == 10.0
    assert f"Services fall into {SHARDS} shards" in text
    assert f"add up to {SHARDS}" in text


# What operators watch. ------------------------------------------------------------------------


def _node(metrics: Metrics) -> Ownership:
    return Ownership("pagerd-1", FakeCluster(trio.current_time), inline, 10.0, metrics, run="r1")


def test_every_cluster_metric_is_in_the_guide_and_every_one_it_names_exists() -> None:
    async def rendered() -> str:
        metrics = Metrics()
        node = _node(metrics)
        # The inbox's metrics: registered when it is built (nothing of it runs here).
        Inbox(cast(Services, None), FakeCluster(trio.current_time), cast(SharedStore, None),
              node, inline, Clock(0.0), metrics=metrics)  # fmt: skip
        return metrics.render()

    names = set(re.findall(r"^# HELP (pagerd_cluster_\w+)", trio.run(rendered), re.MULTILINE))
    assert names
    named = set(re.findall(r"pagerd_cluster_\w+", GUIDE.read_text()))
    assert named == names


def test_the_status_fields_shown_are_the_server_s() -> None:
    async def fields() -> tuple[dict[str, object], dict[str, object]]:
        node = _node(Metrics())
        return _cluster(node), await _owner(node, "payments-api")

    cluster, owner = trio.run(fields)
    text = GUIDE.read_text()
    shown = json.loads(_block_after(text, "has the same as a `cluster` object:"))
    assert set(shown) == set(cluster)
    # The header line shown is what `pager status` makes of that object.
    header = _block_after(text, "as of its last lease round:")
    rendered = cli.render("status", {"services": [], "cluster": shown})
    assert rendered.startswith(header + "\n"), rendered
    owner_shown = re.search(r"has the service's\s+`owner`: `(\{.*?\})`", text)
    assert owner_shown is not None
    assert set(json.loads(owner_shown.group(1))) == set(owner)
    for field in re.findall(r"`cluster\.(\w+)`", text):
        assert field in cluster, field


def test_the_cluster_s_guarantees_name_tests_that_exist() -> None:
    """Each test docs/guarantees.md names for the cluster is defined in a file that bullet
    names."""
    text = (ROOT / "docs" / "guarantees.md").read_text()
    section = text.split("\n## Several nodes\n", 1)[1].split("\n## ", 1)[0]
    listed = next(block for block in section.split("\n\n") if block.startswith("- "))
    bullets = [b for b in listed.split("\n- ") if "`test_" in b]
    assert len(bullets) >= 3
    for bullet in bullets:
        files = re.findall(r"`(tests/\w+\.py)`", bullet)
        assert files, bullet
        defined = "".join((ROOT / f).read_text() for f in files)
        for name in re.findall(r"`(test_\w+)`", bullet):
            assert re.search(rf"^(async )?def {name}\(", defined, re.MULTILINE), name
