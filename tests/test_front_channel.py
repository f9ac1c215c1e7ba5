"""The private channel between the core and a front process: what crosses it comes out as it went
in (events, outcomes, the config with its keys), its framing takes lines however they are cut,
and what is not a message breaks the channel rather than being guessed at."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given

from pager.domain import (
    Ack,
    Alert,
    Healthy,
    Heartbeat,
    Resolve,
    Source,
    Timeout,
)
from pagerd.config.channels import Secret
from pagerd.config.http import FrontConfig, HttpConfig, HttpLimits, Integration
from pagerd.front.core import Submission
from pagerd.front.http.channel import (
    BrokenChannel,
    Configure,
    Counts,
    Reader,
    Replied,
    Submit,
    configure,
    encode,
    from_wire,
    front_config,
    outcomes_of,
    replied,
    to_core,
    to_front,
    to_wire,
)
from pagerd.front.http.limits import FAILED_BURST
from pagerd.front.http.shared import SharedSeats, SharedWrongKeys
from tests.strategies import messages, service_names

texts = st.text(max_size=64)
sources = st.builds(Source, texts, texts)
starts = st.none() | st.integers(0, 2**63 - 1)
incidents = st.none() | st.integers(1, 2**53)
events = st.one_of(
    st.builds(Alert, messages, st.none() | sources, starts),
    st.builds(Ack, st.none() | texts, st.none() | sources, incident=incidents),
    st.builds(Resolve, sources, starts),
    st.builds(Heartbeat, st.none() | texts),
    st.builds(Healthy, st.none() | texts, incident=incidents),
)
submissions = st.tuples(st.none() | service_names, events)


@given(st.lists(submissions, max_size=5), st.integers(0, 2**53))
def test_a_submission_crosses_as_it_was(batch: list[Submission], id: int) -> None:
    line = encode(Submit(id, "am", [to_wire(s) for s in batch]))
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever the text
    [message] = to_core.decode_lines(line)
    assert isinstance(message, Submit) and message.id == id
    assert [from_wire(w) for w in message.events] == batch


def test_an_event_no_way_in_sends_does_not_cross() -> None:
    """A deadline's event is the engine's own: no front, no inbox carries one. (Silences do
    cross now: on a cluster, the inbox carries them to the owner, with the same codec.)"""
    with pytest.raises(ValueError, match="not an event a way in sends"):
        to_wire(("api", Timeout(1, 1, 1)))


replies = st.lists(
    st.tuples(
        st.dictionaries(st.text(max_size=8), st.text(max_size=16) | st.integers(), max_size=3),
        st.sampled_from(["ok", "unknown_service", "no_open_incident"]),
    ),
    max_size=4,
)


@given(replies)
def test_reply_lines_cross_byte_for_byte(found: list[tuple[dict[str, object], str]]) -> None:
    outcomes = [(msgspec.json.encode(reply) + b"\n", result) for reply, result in found]
    [message] = to_front.decode_lines(replied(7, outcomes))
    assert isinstance(message, Replied) and outcomes_of(message) == outcomes


def test_the_config_crosses_with_its_keys_and_shows_none(tmp_path: Path) -> None:
    integration = Integration(
        "am", "alertmanager", Secret("key-0123456789abcdef"), service_label="service",
        services=frozenset({"api", "web"}), heartbeat_alert=None,
    )  # fmt: skip
    http = HttpConfig(
        tls=(tmp_path / "cert.pem", tmp_path / "key.pem"),
        public_url="https://pager.example",
        limits=HttpLimits(4096, 2.5, 5.0, 7, 3.0, 9),
    )
    sent = FrontConfig.of(http, {"am": integration}, {"api": "p", "web": "p"})
    message = to_front.decode(encode(configure(sent)))
    assert isinstance(message, Configure)
    got = front_config(message)
    assert got.http == http
    assert got.integrations == {"am": integration}
    assert set(got.services) == {"api", "web"}
    assert [k.route.name for k in got.keyed] == []  # events-v2 keys only
    assert "key-0123456789abcdef" not in repr(got)


async def test_lines_are_read_however_they_are_cut() -> None:
    sent = b"".join(encode(Counts([("/alert", "200", i)], [])) for i in range(50))
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        reader = Reader(theirs, to_core)
        for at in range(0, len(sent), 7):  # pieces that end anywhere in a line
            await ours.send_all(sent[at : at + 7])
        await ours.aclose()
        got: list[object] = []
        while messages := await reader.receive():
            got += messages
    assert got == [Counts([("/alert", "200", i)], []) for i in range(50)]


async def test_what_is_not_a_message_breaks_the_channel() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        await ours.send_all(b'["submit", "not an id"]\n')
        with pytest.raises(BrokenChannel):
            await Reader(theirs, to_core).receive()


async def test_a_wait_lasts_its_seconds_and_the_table_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seats = SharedSeats.create(2, addresses=3)
    # Two processes' views of one file (the core's and a front's), on the test's clock.
    here = SharedWrongKeys(seats.fd, 2, clock=trio.current_time, addresses=3)
    there = SharedWrongKeys(seats.fd, 2, clock=trio.current_time, addresses=3)

    def wrong() -> bool:
        return False

    try:
        for _ in range(FAILED_BURST):
            assert await here.check("10.0.0.1", wrong) is None
        assert await there.check("10.0.0.1", wrong) == 1  # spent, in every process
        assert here.retry_after("10.0.0.1") == 1
        await trio.sleep(1.5)
        assert await there.check("10.0.0.1", lambda: True) is None
        assert await there.check("10.0.0.1", wrong) is None
        assert await here.check("10.0.0.1", wrong) == 1
        await trio.sleep(1)
        assert here.retry_after("10.0.0.1") is None
        for i in range(10):
            await trio.sleep(0.01)
            assert await there.check(f"10.0.1.{i}", wrong) is None
        assert len(here) == 3  # the least recently failing forgotten first
        assert [here.retry_after(f"10.0.1.{i}") for i in (7, 8, 9)] == [None] * 3
        for _ in range(FAILED_BURST - 1):
            await here.check("10.0.1.9", wrong)
        assert there.retry_after("10.0.1.9") == 1
    finally:
        here.close()
        there.close()
        seats.close()
