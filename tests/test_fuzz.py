"""Hostile input, generated: the decoder, the live daemon and the config loader must answer every
input with an error code or an error list, never a crash, and change nothing."""

from __future__ import annotations

import contextlib
import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import rtoml
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pager import protocol
from pager.protocol import MAX_BY, MAX_LINE, MAX_TEXT, ProtocolError, Request, parse_request
from pagerd.config import Config, ConfigError, from_dict, load
from tests.harness import connect, running, settle, write_config

CODES = {"bad_request", "unknown_op", "too_large"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
ops = st.sampled_from(["alert", "ack", "healthy", "status", "ping", "history", "metrics", "x", ""])
fields = st.sampled_from(["service", "message", "by", "incident", "op", "extra", "\x00"])
requests = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(fields, json_values, max_size=5).flatmap(
        lambda d: ops.map(lambda op: json.dumps({"op": op, **d}).encode())
    ),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.just(b"[" * 5000),
    st.just(b'{"op": "alert", "service": "' + b"x" * 200 + b'"}'),
    st.just(b'{"op": "alert", "service": "api", "message": "\\ud800"}'),
)


# Real events mixed into the garbage: the state must follow them, and only them.
valid_events = st.sampled_from(
    [
        b'{"op": "alert", "service": "api", "message": "from the fuzzer"}',
        b'{"op": "ack", "service": "api"}',
        b'{"op": "healthy", "service": "api"}',
    ]
)


@settings(max_examples=500, deadline=None)
@given(line=requests)
def test_decoder_answers_every_input_with_a_request_or_a_code(line: bytes) -> None:
    try:
        request = parse_request(line)
    except ProtocolError as exc:
        assert exc.code in CODES and exc.message
    else:
        assert request.op in {"alert", "ack", "healthy", "status", "ping", "history", "metrics"}


# Events near every edge of what is valid: names, lengths, NUL, null, wrong types, extra fields.
valid_names = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)
names = st.one_of(
    valid_names,
    st.sampled_from(["x" * 128, "x" * 129, "", "api\n", "api ", "ä", "a#1"]),
    st.none(),
    st.integers(),
)
texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="a\x00é", max_size=4),
    st.sampled_from([MAX_BY - 1, MAX_BY, MAX_BY + 1]).map(lambda n: "é" * n),
    st.sampled_from([MAX_TEXT, MAX_TEXT + 1]).map(lambda n: "a" * n),
    st.none(),
    st.integers() | st.lists(st.text(max_size=3), max_size=2),
)
near_events = st.one_of(
    st.builds(lambda s, m: {"op": "alert", "service": s, "message": m}, valid_names, texts),
    st.builds(lambda s, b: {"op": "ack", "service": s, "by": b}, valid_names, texts),
    st.builds(lambda s: {"op": "healthy", "service": s}, names),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["alert", "ack", "healthy", "status", "history"])},
        optional={"service": names, "message": texts, "by": texts, "incident": texts, "x": texts},
    ),
).map(lambda d: json.dumps(d).encode())
# JSON objects may repeat a key; which one counts must not depend on the path taken.
repeated = st.lists(
    st.tuples(st.sampled_from(["op", "service", "message", "by"]), names | ops | st.text()),
    min_size=1,
    max_size=5,
).map(
    lambda pairs: (
        "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    ).encode()
)


def _outcome(parse: Any, line: bytes) -> Request | tuple[str, str]:
    try:
        request: Request = parse(line)
    except ProtocolError as exc:
        return exc.code, exc.message
    return request


@settings(max_examples=1000, deadline=None)
@given(line=requests | near_events | repeated)
def test_the_fast_path_for_events_agrees_with_the_full_parse(line: bytes) -> None:
    assert _outcome(parse_request, line) == _outcome(protocol._parse, line)


def test_over_long_lines_are_too_large() -> None:
    try:
        parse_request(b"x" * (MAX_LINE + 1))
    except ProtocolError as exc:
        assert exc.code == "too_large"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(requests | valid_events, min_size=1, max_size=20))
def test_the_live_daemon_survives_garbage_and_nothing_changes(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-fuzz-") as folder:
        config = write_config(Path(folder), services={"api": "oncall"})
        trio.run(
            partial(_garbage, config, lines), clock=trio.testing.MockClock(autojump_threshold=0)
        )


async def _garbage(config: Config, lines: list[bytes]) -> None:
    with trio.fail_after(3600):
        async with running(config):
            async with connect(config.socket) as conn:
                await conn.send(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
                replies = []
                for _ in lines:
                    raw = await conn.receive_line()
                    if raw is None:
                        break  # too_large closes the connection
                    replies.append(json.loads(raw))
            await settle()
            async with connect(config.socket) as conn:
                status = await conn.request("status", service="api")
                assert (await conn.request("ping"))["ok"] is True
    for reply in replies:
        if not reply["ok"]:
            code = reply["error"]["code"]
            assert code in CODES | {"unknown_service", "no_open_incident", "not_found"}, reply
    # Garbage may hold valid events by chance; replies come in order on one connection, so
    # the last reply that showed api's state is what the state must be now.
    shown = [r["state"] for r in replies if r.get("ok") and r.get("service") == "api"]
    assert status["state"] == (shown[-1] if shown else "healthy")


toml_keys = st.sampled_from(
    ["daemon", "channels", "policies", "services", "metrics", "email", "sms", "log", "levels",
     "targets", "ack_timeout", "repeat", "policy", "transport", "socket", "state_dir", "x",
     "payments", "host", "port", "allow_users", "max_connections", "listen"]
)  # fmt: skip
toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["log", "smtp", "15m", "email:a@example.com", "sms:+1415", "p", "0s"])
)
toml_documents = st.recursive(
    st.dictionaries(toml_keys, toml_scalars, max_size=4),
    lambda children: st.dictionaries(
        toml_keys, children | st.lists(children, max_size=3) | toml_scalars, max_size=4
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(document=toml_documents)
def test_any_config_document_gives_a_config_or_errors_never_a_traceback(
    document: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-cfg-") as folder:
        path = Path(folder) / "pager.toml"
        try:
            path.write_text(rtoml.dumps(document))
        except (TypeError, ValueError):
            return  # not expressible in TOML
        try:
            load(path)
        except ConfigError as exc:
            assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        with contextlib.suppress(ConfigError):  # the same document, given as a dict
            from_dict(document, path)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_as_config_gives_errors_never_a_traceback(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-cfg-") as folder:
        path = Path(folder) / "pager.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load(path)
        except ConfigError as exc:
            assert exc.errors
