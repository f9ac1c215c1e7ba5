"""Every HTTP endpoint fed garbage: malformed JSON, wrong types, huge or deeply nested bodies,
invalid UTF-8, odd paths and keys. Each gets a clear 4xx (a read may be 200), nothing is
recorded, and the daemon goes on answering."""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path
from urllib.parse import quote

import httpx
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagerd.config import Config
from tests.harness import connect, notifications, running, settle
from tests.http import KEYS, base_url, http_config

ENDPOINTS = [
    ("POST", "/alert"),
    ("POST", "/acknowledge"),
    ("POST", "/healthy"),
    ("GET", "/status"),
    ("GET", "/status/{service}"),
    ("GET", "/history/{service}"),
    ("GET", "/-/healthy"),
    ("GET", "/-/ready"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/integrations/alertmanager/{key}"),
    ("POST", "/v1/integrations/alertmanager"),
    ("POST", "/v2/enqueue"),
    ("POST", "/heartbeat/{service}"),
    ("PUT", "/alert"),
    ("POST", "/{service}"),
]

# Never a configured service (api, web): no garbage can be a valid event by chance.
names = st.text(max_size=20).filter(lambda s: s not in ("api", "web"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | names,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["service", "message", "by", "op", "x"]) | names, children
        )
    ),
    max_leaves=12,
)
bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {"service": json_values}, optional={"message": json_values, "by": json_values}
    ).map(lambda v: json.dumps(v).encode())
    | st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n)
    | st.integers(min_value=1, max_value=3).map(lambda n: b'{"service": "\xff\xfe", "m": 1}' * n)
    | st.just(b'{"service": "api", "message": "' + b"x" * 5000 + b'"}')
)
segments = st.text(
    st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=30
).filter(lambda s: s not in ("api", "web") and s.strip() not in ("", ".", ".."))
keys = st.sampled_from([None, KEYS["ops"], KEYS["am"], "wrong", KEYS["ops"] + " x"])
Sent = tuple[tuple[str, str], bytes, str, str | None]
requests = st.tuples(st.sampled_from(ENDPOINTS), bodies, segments, keys)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(requests, min_size=1, max_size=12))
def test_garbage_gets_a_clear_4xx_and_changes_nothing(
    sent: list[Sent],
) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-http-fuzz-") as folder:
        config = http_config(Path(folder))
        trio.run(
            partial(_garbage, config, sent), clock=trio.testing.MockClock(autojump_threshold=0)
        )
        assert notifications(config) == []


async def _garbage(config: Config, sent: list[Sent]) -> None:
    with trio.fail_after(3600):
        async with running(config) as daemon:
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
                for (method, pattern), body, segment, key in sent:
                    quoted = quote(segment, safe="")
                    path = pattern.replace("{service}", quoted).replace("{key}", quoted)
                    headers = {} if key is None else {"authorization": f"Bearer {key}"}
                    response = await client.request(method, path, content=body, headers=headers)
                    status = response.status_code
                    read = method == "GET"
                    assert 400 <= status < 500 or (read and status == 200), (status, path)
                    if status != 200:
                        answer = response.json()
                        # The protocol's error; Alertmanager's and PagerDuty's shapes at theirs.
                        error = answer.get("error", answer)
                        assert error["message"] and (error.get("code") or error.get("status"))
                await settle()
                assert (await client.get("/-/healthy")).status_code == 200
                assert (await client.get("/-/ready")).status_code == 200
            async with connect(config.socket) as conn:
                status_reply = await conn.request("status")
            assert all(s["state"] == "healthy" for s in status_reply["services"])
