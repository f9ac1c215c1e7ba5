"""The pure side of answering a page: reply codes read, the SMS page's text fitted to one
segment with its hint, what a person is told, and answers bound to their incident."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pager.domain import (
    Ack,
    Alert,
    Healthy,
    Level,
    Notify,
    Policy,
    Rejected,
    ServiceState,
    Target,
    decide,
)
from pager.messages import MAX_SHORT
from pager.replies import Reply, escalation_stopped, outcome, parse_reply, reply_hint, sms_text
from pager.templates import MIN_SMS_MESSAGE as MIN_MESSAGE
from pager.templates import SMS_SEGMENT as SEGMENT_GSM
from pager.templates import TWO_UCS2, gsm_length, ucs2_length

POLICY = Policy((Level((Target("sms", "+14155550100"),), 300.0),))


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("4a", Reply("ack", 4)),
        (" 4A\n", Reply("ack", 4)),
        ("'4 c'", Reply("close", 4)),
        ("12c", Reply("close", 12)),
        ("a", Reply("ack", None)),
        ("Ack", Reply("ack", None)),
        ("acknowledge", Reply("ack", None)),
        ("close", Reply("close", None)),
        ("C", Reply("close", None)),
        ("4e", None),
        ("0a", None),
        ("9999999a", None),
        ("4", None),
        ("yes", None),
        ("4a please", None),
        ("", None),
        ("٤a", None),  # an Arabic-Indic four is no code
    ],
)
def test_replies_are_read_as_goalert_reads_them(body: str, reply: Reply | None) -> None:
    assert parse_reply(body) == reply


@given(st.text(max_size=200))
def test_any_text_is_a_reply_or_none_never_an_error(body: str) -> None:
    reply = parse_reply(body)
    assert reply is None or (reply.action in ("ack", "close") and reply.code != 0)


def notify(message: str, service: str = "payments-api") -> Notify:
    return Notify(service, 3, 1, 1, Target("sms", "+14155550100"), message, 0.0)


def test_a_short_page_is_whole_and_ends_with_its_hint() -> None:
    text = sms_text(notify("disk full"), 4)
    assert text == "[pager] payments-api level 1: disk full -- Reply 4a to acknowledge, 4c to close"
    assert reply_hint(4) == "Reply 4a to acknowledge, 4c to close"


@given(
    message=st.text(max_size=4096),
    service=st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True),
    code=st.integers(min_value=1, max_value=999),
)
def test_a_page_keeps_its_hint_and_fits_one_segment_where_it_can(
    message: str, service: str, code: int
) -> None:
    text = sms_text(notify(message, service), code)
    assert text.endswith(f" -- {reply_hint(code)}")
    assert "\n" not in text and "\r" not in text
    assert len(text) <= MAX_SHORT
    septets = gsm_length(text)
    if septets is not None:
        # GSM-7: one segment, unless the head and hint alone leave no room for the message.
        room = SEGMENT_GSM - (septets - (gsm_length(_message_part(text, code)) or 0))
        assert septets <= SEGMENT_GSM or room < MIN_MESSAGE + 3
    else:
        assert ucs2_length(text) <= TWO_UCS2 or len(_message_part(text, code)) <= MIN_MESSAGE + 3


def _message_part(text: str, code: int) -> str:
    return text.split(": ", 1)[1].removesuffix(f" -- {reply_hint(code)}")


def test_a_long_message_is_cut_visibly_to_one_segment() -> None:
    text = sms_text(notify("x" * 4000), 12)
    assert gsm_length(text) == SEGMENT_GSM or gsm_length(text) == SEGMENT_GSM - 1
    assert "x..." in text


@pytest.mark.parametrize(
    ("action", "result", "reply", "shown_by", "words"),
    [
        ("ack", "ok", {"already_acknowledged": None}, None, "Acknowledged api#3"),
        ("ack", "ok", {"already_acknowledged": None}, "@a", "Acknowledged api#3 by @a"),
        (
            "ack",
            "ok",
            {"already_acknowledged": {"by": "sms:+1", "via": "sms", "at": "T"}},
            None,
            # The same person again: told that the first one counted, not "Acknowledged" again.
            "api#3 was already acknowledged by you (via sms) at T",
        ),
        (
            "ack",
            "ok",
            {"already_acknowledged": {"by": "sms:+1", "via": "sms\u202e", "at": "T"}},
            "@a",
            "api#3 was already acknowledged by @a (via sms\\u202e) at T",  # seen by others
        ),
        (
            "ack",
            "ok",
            {"already_acknowledged": {"by": "bob\x1b[2J", "via": "link", "at": "T"}},
            None,
            "api#3 was already acknowledged by bob\\x1b[2J via link at T",
        ),
        # What the reply does not say is left out, whoever asks; each part cut at 80.
        (
            "ack",
            "ok",
            {"already_acknowledged": {"by": "sms:+1", "at": "T"}},
            None,
            "api#3 was already acknowledged by you at T",
        ),
        (
            "ack",
            "ok",
            {"already_acknowledged": {"via": "link", "at": None}},
            None,
            "api#3 was already acknowledged via link",
        ),
        (
            "ack",
            "ok",
            {"already_acknowledged": {"by": "b" * 100, "via": "v" * 100}},
            None,
            f"api#3 was already acknowledged by {'b' * 80} via {'v' * 80}",
        ),
        ("close", "ok", {}, None, "Closed api#3"),
        ("close", "no_open_incident", {}, None, "api#3 is already closed"),
        (
            "ack",
            "unavailable",
            {},
            None,
            "Could not record your answer to api#3 just now: send it again",
        ),
    ],
)
def test_what_a_person_is_told(
    action: str, result: str, reply: dict[str, object], shown_by: str | None, words: str
) -> None:
    assert outcome(action, "api#3", "sms:+1", result, reply, shown_by) == words  # type: ignore[arg-type]


def test_an_answer_acts_only_on_the_incident_it_names() -> None:
    state, _ = decide(ServiceState("api"), Alert("down"), 0.0, POLICY)
    state, _ = decide(state, Healthy(), 1.0, POLICY)
    state, _ = decide(state, Alert("down again"), 2.0, POLICY)  # api#2 is open
    with pytest.raises(Rejected) as refused:
        decide(state, Ack(by="sms:+1", incident=1), 3.0, POLICY)
    assert (refused.value.code, refused.value.message) == ("no_open_incident", "api#1 is closed")
    with pytest.raises(Rejected):
        decide(state, Healthy(incident=1), 3.0, POLICY)
    acked, _ = decide(state, Ack(by="sms:+1", incident=2), 3.0, POLICY)
    assert acked.incident is not None and acked.incident.acknowledged_by == "sms:+1"
    closed, _ = decide(acked, Healthy(incident=2), 4.0, POLICY)
    assert closed.incident is None
    with pytest.raises(Rejected):
        decide(closed, Healthy(incident=2), 5.0, POLICY)  # closed already: said, not silent


@given(
    numbers=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=12),
    acks=st.lists(st.integers(min_value=1, max_value=5), max_size=12),
)
def test_a_named_answer_is_refused_unless_its_incident_is_the_open_one(
    numbers: list[int], acks: list[int]
) -> None:
    state = ServiceState("api")
    at = 0.0
    for step, number in enumerate(numbers):
        at += 1.0
        event = Alert("down") if step % 2 == 0 else Healthy(incident=number)
        for named in acks[step : step + 1]:
            try:
                after, _ = decide(state, Ack(by="x", incident=named), at, POLICY)
            except Rejected:
                assert state.incident is None or state.incident.number != named
            else:
                assert state.incident is not None and state.incident.number == named
                assert after.incident is not None and after.incident.acknowledged
        try:
            state, _ = decide(state, event, at, POLICY)
        except Rejected:
            assert isinstance(event, Healthy)
            assert state.incident is None or state.incident.number != event.incident


@pytest.mark.parametrize(
    ("incident", "words"),
    [
        ({"acknowledged_at": "2027-01-15T08:01:00.000Z", "ack_expires_at": None},
         "escalation stopped"),
        ({"acknowledged_at": "2027-01-15T08:01:00.000Z",
          "ack_expires_at": "2027-01-15T12:01:30.000Z"},
         "escalation stopped until 12:01 UTC (the acknowledgement expires: policy ack_expiry)"),
        ({"acknowledged_at": "2027-01-15T22:00:00.000Z",
          "ack_expires_at": "2027-01-16T02:00:00.000Z"},
         "escalation stopped until 2027-01-16 02:00 UTC (the acknowledgement expires: policy"
         " ack_expiry)"),
        ({"ack_expires_at": "\x1b[2J"}, "escalation stopped"),
        ({}, "escalation stopped"),
    ],
)  # fmt: skip
def test_an_acknowledgement_says_until_when_escalation_stopped(
    incident: dict[str, object], words: str
) -> None:
    assert escalation_stopped(incident) == words
