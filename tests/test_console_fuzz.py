"""The console's forms fed garbage over real HTTP, signed in and not: malformed and oversized
forms, bad encodings, wrong content types, odd paths. Each gets a clear 4xx page, the open
incident stays as it was, and the daemon goes on answering."""

from __future__ import annotations

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
from tests.console import console_config, csrf_of, sign_in
from tests.harness import connect, running, settle
from tests.http import base_url

PATHS = [
    "/console/incidents/api/1/ack",
    "/console/incidents/api/1/resolve",
    "/console/incidents/{segment}/1/ack",
    "/console/incidents/api/{segment}/resolve",
    "/console/sign-in",
]
KINDS = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=x",
    "application/json",
    "text/plain",
    None,
]
fields = st.sampled_from(["csrf", "username", "password", "x", "", "csrf[]"])
values = st.text(max_size=30) | st.just("%FF%FE") | st.just("\x00")
forms = st.lists(st.tuples(fields, values), max_size=5).map(
    lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
)
bodies = (
    forms
    | st.binary(max_size=300)
    | st.just(b"csrf=" + b"a" * 5000)
    | st.just(b"csrf=%C3%28")
    | st.just(b"csrf=\xff\xfe")
    | st.integers(min_value=1, max_value=50).map(lambda n: b"csrf=1&" * n)
)
segments = st.text(
    st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=20
).filter(lambda s: s not in ("api", "web", "1") and s.strip() not in ("", ".", ".."))
Sent = tuple[str, bytes, str | None, str, bool, bool]
requests = st.tuples(
    st.sampled_from(PATHS), bodies, st.sampled_from(KINDS), segments, st.booleans(), st.booleans()
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(requests, min_size=1, max_size=10))
def test_garbage_forms_get_a_clear_4xx_and_change_nothing(sent: list[Sent]) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-console-fuzz-") as folder:
        config = console_config(Path(folder))
        trio.run(
            partial(_garbage, config, sent), clock=trio.testing.MockClock(autojump_threshold=0)
        )


async def _garbage(config: Config, sent: list[Sent]) -> None:
    with trio.fail_after(3600):
        async with running(config) as daemon:
            async with connect(config.socket) as conn:
                assert (await conn.request("alert", service="api", message="m"))["ok"]
                before = await conn.request("status", service="api")
            url = base_url(daemon)
            async with (
                httpx.AsyncClient(base_url=url, timeout=30) as alice,
                httpx.AsyncClient(base_url=url, timeout=30) as nobody,
            ):
                await sign_in(alice, "alice")
                valid = csrf_of((await alice.get("/console/")).text)
                for path, body, kind, segment, signed_in, with_token in sent:
                    if with_token:  # a real token, in a body that is wrong in another way
                        body = body + b"&csrf=" + valid.encode()
                    headers = {} if kind is None else {"content-type": kind}
                    target = path.replace("{segment}", quote(segment, safe=""))
                    client = alice if signed_in else nobody
                    response = await client.post(target, content=body, headers=headers)
                    assert 400 <= response.status_code < 500, (response.status_code, target, body)
                    assert response.text, "a 4xx says why"
                await settle()
                assert (await nobody.get("/-/healthy")).status_code == 200
                assert (await alice.get("/console/")).status_code == 200
            async with connect(config.socket) as conn:
                after = await conn.request("status", service="api")
            # Time passed (the mock clock jumps while idle), and deliveries went on: but the
            # incident is the same, still open, still unacknowledged.
            assert after["state"] == "unhealthy"
            assert after["incident"]["id"] == before["incident"]["id"]
            assert after["incident"]["acknowledged"] is False
