"""Where services fall (`pager.shards`): every node computes the same owners from the same list
of nodes; a node joining or leaving moves only the shards it gains or loses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pager.shards import SHARDS, preferred, shard_of, share

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
nodes = st.sets(names, min_size=1, max_size=6)


@given(names)
def test_a_service_falls_in_one_shard_the_same_everywhere(service: str) -> None:
    assert 0 <= shard_of(service) < SHARDS
    assert shard_of(service) == shard_of(service)


def test_shard_of_is_crc32_so_that_every_version_agrees() -> None:
    assert shard_of("api") == 2902841359 % SHARDS  # zlib.crc32(b"api"), fixed forever


@given(nodes)
def test_the_shares_of_the_nodes_alive_cover_every_shard_once(alive: set[str]) -> None:
    shares = [share(node, alive) for node in alive]
    assert sum(len(s) for s in shares) == SHARDS
    assert frozenset().union(*shares) == frozenset(range(SHARDS))


@given(nodes, names)
def test_a_node_joining_takes_shards_only_for_itself(alive: set[str], new: str) -> None:
    for shard in range(SHARDS):
        before, after = preferred(shard, alive), preferred(shard, alive | {new})
        assert after in (before, new)


def test_three_nodes_share_the_shards_about_evenly() -> None:
    sizes = sorted(
        len(share(n, ["node-1", "node-2", "node-3"])) for n in ["node-1", "node-2", "node-3"]
    )
    assert sizes[0] > SHARDS / 3 * 0.7, sizes
