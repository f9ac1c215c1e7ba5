"""The one form reader (`pagerd.front.http.forms`) that links, the console, Twilio's SMS replies
and Slack's clicks share: what it gives back, and every way it refuses, on its own."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pagerd.front.http.forms import (
    FORM,
    MAX_FORM_BYTES,
    MAX_VALUE,
    FormError,
    is_form,
    parse_form,
    read_form,
)
from pagerd.front.http.limits import FailedKeys

pairs = st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(fields=pairs)
def test_any_fields_encoded_as_a_browser_does_are_read_back_as_sent(
    fields: list[tuple[str, str]],
) -> None:
    body = urlencode(fields).encode("ascii")
    assert parse_form(body, max_fields=12) == fields  # in order, a name twice kept twice


@settings(max_examples=300, deadline=None)
@given(fields=pairs)
def test_fields_not_percent_encoded_are_read_as_utf_8(fields: list[tuple[str, str]]) -> None:
    """As the WHATWG form parser reads them: a byte over 127 is UTF-8, not an error."""
    safe = [(n, v) for n, v in fields if not set("&=+%") & set(n + v)]
    body = "&".join(f"{n}={v}" for n, v in safe).encode()
    assert parse_form(body, max_fields=12) == safe


@settings(max_examples=500, deadline=None)
@given(
    body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    max_fields=st.integers(1, 8),
    max_bytes=st.none() | st.integers(0, 200),
)
def test_any_body_is_fields_within_bounds_or_a_clear_refusal(
    body: bytes, max_fields: int, max_bytes: int | None
) -> None:
    try:
        fields = parse_form(body, max_fields=max_fields, max_bytes=max_bytes)
    except FormError as exc:
        assert exc.status in (400, 413) and exc.message.startswith("the form ")
        assert (exc.status == 413) == (max_bytes is not None and len(body) > max_bytes)
    else:
        assert len(fields) <= max_fields
        assert max_bytes is None or len(body) <= max_bytes
        assert all(isinstance(n, str) and isinstance(v, str) for n, v in fields)


def test_the_bounds_are_exact() -> None:
    assert parse_form(b"", max_fields=1) == []
    assert parse_form(b"a=1&b=2&c=", max_fields=3) == [("a", "1"), ("b", "2"), ("c", "")]
    with pytest.raises(FormError) as caught:
        parse_form(b"a=1&b=2&c=3&d=4", max_fields=3)
    assert (caught.value.status, caught.value.message) == (
        400,
        "the form has more than 3 fields",
    )
    body = b"a=" + b"x" * 98
    assert parse_form(body, max_fields=1, max_bytes=100) == [("a", "x" * 98)]
    with pytest.raises(FormError) as caught:
        parse_form(body + b"x", max_fields=1, max_bytes=100)
    assert (caught.value.status, caught.value.message) == (413, "the form is over 100 bytes")


@pytest.mark.parametrize(
    "body",
    [
        b"a=%FF",  # percent-encoded, but not UTF-8
        b"a=\xff",  # not UTF-8 at all
        b"a=%C3",  # UTF-8 cut short
        b"a",  # a name without a value
        b"a=1&&b=2",  # an empty field
        b"a=1&",  # a trailing separator
        b"&",
    ],
)
def test_what_is_not_a_form_is_a_clear_400(body: bytes) -> None:
    with pytest.raises(FormError) as caught:
        parse_form(body, max_fields=4)
    assert caught.value.status == 400
    assert caught.value.message == "the form is not valid (URL-encoded UTF-8 fields)"


def test_plus_is_a_space_a_semicolon_no_separator_and_an_empty_name_a_name() -> None:
    assert parse_form(b"=", max_fields=1) == [("", "")]
    assert parse_form(b"a=x+y%2By&b=1;c=2", max_fields=4) == [("a", "x y+y"), ("b", "1;c=2")]


@pytest.mark.parametrize(
    ("content_type", "form"),
    [
        (FORM, True),
        ("Application/X-WWW-Form-URLEncoded; charset=UTF-8", True),
        (" application/x-www-form-urlencoded ;charset=utf-8", True),
        ("", False),
        ("multipart/form-data; boundary=x", False),
        ("application/json", False),
        ("application/x-www-form-urlencoded-not", False),
    ],
)
def test_a_form_is_known_by_its_type(content_type: str, form: bool) -> None:
    assert is_form(content_type) is form
    if not form:
        with pytest.raises(FormError) as caught:
            read_form(content_type, b"a=1", frozenset({"a"}))
        assert caught.value.status == 415


def test_read_form_takes_each_known_field_once_within_its_bound() -> None:
    fields = frozenset({"csrf", "name"})
    assert read_form(FORM, b"name=&csrf=x", fields) == {"csrf": "x", "name": ""}
    long = ("x" * MAX_VALUE).encode()
    assert read_form(FORM, b"csrf=" + long + b"&name=", fields)["csrf"] == "x" * MAX_VALUE
    for body, message in [
        (b"csrf=x", "the form is missing a field"),
        (b"", "the form is missing a field"),
        (b"csrf=x&name=y&a=1&b=2", "the form has more than 3 fields"),
        (b"csrf=x&other=z", "the form has a field it does not take"),
        (b"csrf=x&csrf=y", "the form gives a field twice"),
        (b"csrf=x&name=%00", "a field of the form is too long or holds a NUL"),
        (b"csrf=" + long + b"x&name=", "a field of the form is too long or holds a NUL"),
    ]:
        with pytest.raises(FormError) as caught:
            read_form(FORM, body, fields)
        assert (caught.value.status, caught.value.message) == (400, message), body
    assert read_form(FORM, b"t=" + b"x" * 3000, frozenset({"t"}), max_value=3000)
    with pytest.raises(FormError) as caught:
        read_form(FORM, b"t=" + b"x" * MAX_FORM_BYTES, frozenset({"t"}), max_value=10**6)
    assert caught.value.status == 413


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(st.tuples(st.sampled_from(["csrf", "name", "x"]), st.text(max_size=30))),
    content_type=st.sampled_from([FORM, "text/plain", ""]),
)
def test_read_form_gives_exactly_its_fields_or_refuses(
    fields: list[tuple[str, str]], content_type: str
) -> None:
    wanted = frozenset({"csrf", "name"})
    names = [n for n, _ in fields]
    try:
        form = read_form(content_type, urlencode(fields).encode(), wanted)
    except FormError as exc:
        assert exc.status in (400, 413, 415) and exc.message
        assert (
            content_type != FORM
            or sorted(names) != ["csrf", "name"]
            or any("\x00" in v or len(v) > MAX_VALUE for _, v in fields)
        )
    else:
        assert content_type == FORM and sorted(names) == ["csrf", "name"]
        assert form == dict(fields)


def test_a_table_that_counts_every_request_takes_its_burst_then_its_rate() -> None:
    """`FailedKeys.take`: what limits link requests and the SMS texted back to a number."""

    async def main() -> None:
        table = FailedKeys(rate=0.5, burst=2, size=2)
        assert [table.take("a") for _ in range(3)] == [None, None, 2]
        assert table.take("b") is None
        await trio.sleep(2)
        assert table.take("a") is None  # one more token in 2 s
        assert table.take("a") == 2
        table.take("c")  # a third number: the least recently counted ("b") is forgotten
        assert len(table) == 2
        assert [table.take("b"), table.take("b")] == [None, None]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
