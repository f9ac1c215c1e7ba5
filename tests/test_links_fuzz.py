"""The link endpoints fed garbage: malformed forms, wrong and missing content types, bodies over
the limit, bytes that are not ASCII or UTF-8, tokens cut, changed or made up. Each gets a clear
4xx page, the open incident stays as it was, and the daemon goes on answering."""

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

from pagerd.access.links import Link
from pagerd.config import Config
from pagerd.front.http.answers import FormError, read_form
from tests.harness import connect, running, settle
from tests.http import base_url, http_config

FORM = "application/x-www-form-urlencoded"
# Where a request's body holds TOKEN, the real token of the open incident goes, changed by the
# request's edit: garbage that is nearly right is the garbage that matters.
edits = st.sampled_from(["cut", "flip", "append", "case", "dot"])
bodies = (
    st.binary(max_size=300)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.just(b"token=TOKEN")
    | st.just(b"token=TOKEN&token=TOKEN")
    | st.just(b"token=TOKEN&confirm=yes")
    | st.just(b"token=%TOKEN")
    | st.just(b"TOKEN")
    | st.just(b"token=TOKEN\xff")
    | st.integers(min_value=1, max_value=3).map(lambda n: b"token=" + b"A" * (5000 * n))
    | st.lists(st.sampled_from([b"token", b"=", b"&", b"%", b"%2", b"TOKEN", b";", b"+"])).map(
        b"".join
    )
)
content_types = st.sampled_from(
    [FORM, FORM + "; charset=utf-8", "APPLICATION/X-WWW-FORM-URLENCODED", None, "text/plain",
     "application/json", "multipart/form-data; boundary=x", "form\x7f"]
)  # fmt: skip
paths = st.sampled_from(["/ack", "/resolve"])
Sent = tuple[str, bytes, str | None, str, bool]
requests = st.tuples(paths, bodies, content_types, edits, st.booleans())


def edited(token: str, edit: str) -> str:
    if edit == "cut":
        return token[:-5]
    if edit == "flip":
        return token[:10] + ("B" if token[10] != "B" else "C") + token[11:]
    if edit == "append":
        return token + "x"
    if edit == "case":
        return token.swapcase()
    return token.replace(".", "")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(requests, min_size=1, max_size=12))
def test_garbage_gets_a_clear_4xx_and_changes_nothing(sent: list[Sent]) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-link-fuzz-") as folder:
        config = http_config(Path(folder), http='public_url = "https://pager.example"\n')
        trio.run(
            partial(_garbage, config, sent), clock=trio.testing.MockClock(autojump_threshold=0)
        )


async def _garbage(config: Config, sent: list[Sent]) -> None:
    with trio.fail_after(3600):
        async with running(config) as daemon:
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api", message="down")
            incident = daemon.services.state("api").incident
            assert incident is not None and daemon.keys is not None
            real = Link("api", 1, incident.opened_at, "email:a@example.com").token(daemon.keys)
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
                for path, body, content_type, edit, as_get in sent:
                    bad = edited(real, edit)
                    if as_get:
                        response = await client.get(f"{path}/{quote(bad, safe='')}")
                    else:
                        headers = {} if content_type is None else {"content-type": content_type}
                        data = body.replace(b"TOKEN", bad.encode())
                        response = await client.post(path, content=data, headers=headers)
                    assert 400 <= response.status_code < 500, (response.status_code, path)
                    if response.status_code != 413:  # the front door's own, in JSON
                        assert response.headers["content-type"].startswith("text/html")
                        assert "Nothing was done" in response.text or response.status_code == 429
                await settle()
                assert (await client.get("/-/healthy")).status_code == 200
            after = daemon.services.state("api").incident
            assert after == incident  # not acknowledged, not closed: nothing changed
            async with connect(config.socket) as conn:
                history = await conn.request("history", service="api")
            answers = [e for e in history["timeline"] if e["event"] in ("ack", "healthy")]
            assert answers == []


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=300), content_type=st.text(max_size=40))
def test_reading_a_form_gives_a_token_or_a_clear_refusal(body: bytes, content_type: str) -> None:
    try:
        token = read_form(content_type, body)
    except FormError as exc:
        assert exc.status in (400, 413, 415) and exc.message
    else:
        assert token.isascii() and len(token) <= 2048
