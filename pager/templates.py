"""The notification templates: what each channel says, in words an operator may change.

A template is Jinja2 text with the page's variables (`VARIABLES`), rendered in a sandbox with
nothing but those variables in reach. What a client sent (an alert's message) is only ever a
variable's value: Jinja2 never reads a value as template syntax, so a message holding `{{ }}`
or `{% %}` is shown as it is, and cannot reach anything but its own text. A template that names
a variable not in `VARIABLES` is refused when the config loads (`problem`), never at 3 a.m.

Each form has its bounds, whatever the template: a subject is one line of at most
`MAX_SUBJECT` characters, an SMS at most `MAX_SHORT` (Twilio refuses longer), and an SMS fits
one segment where it can (160 GSM-7 characters; text that is not GSM-7 goes as UCS-2, 70 in one
segment, else 134 in two) by cutting the alert's message to the room the rest leaves. Pure: no
I/O, no clock; the daemon gives the values (`Page`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import attrs
import jinja2
import jinja2.meta
import jinja2.sandbox

from pager.text import clip, controls

FORMS: Final = ("email_subject", "email_body", "sms", "slack")
"""The templates a config may override (`[templates]`), by key."""

VARIABLES: Final[Mapping[str, str]] = {
    "service": "the service's name",
    "incident": "the incident's id, `payments-api#3`",
    "number": "the incident's number, `3`",
    "message": "the alert's message (one line in a subject, an SMS and Slack; cut to fit),"
    " without the link it ends with (see `link`)",
    "level": "the escalation level notified, from 1",
    "round": "the escalation round, from 1",
    "opened_at": "when the incident opened, ISO 8601 UTC",
    "target": "who is notified, as `pager status` shows it (`email:alice@example.com`)",
    "person": "the person paged (`alice`) when a `person:` or `schedule:` target was resolved"
    " to them; empty for a plain address",
    "via": "how the target was reached (`schedule:payments-primary → alice`, `person:alice`);"
    " empty for a plain address",
    "notification": "the notification's id (`payments-api#3/1/2/email:alice@example.com`)",
    "ack_command": "the command that acknowledges on pagerd's host, `pager ack SERVICE`",
    "ack_url": "the acknowledge link (empty without `http.public_url`)",
    "resolve_url": "the resolve link (empty without one, or where the policy does not allow it)",
    "reply_hint": "how to answer the SMS by replying (empty where SMS replies are not set up)",
    "link": "the link an alert's message ends with, in angle brackets (Alertmanager's and"
    " Grafana's `generatorURL`), http(s) only; empty if none",
}
"""Every variable a template may use, with what it holds (documented in docs/answering.md)."""

SMS_SEGMENT: Final = 160
"""Septets in one SMS segment of GSM-7 text: an SMS fits it where it can."""
SEGMENT_UCS2: Final = 70
"""UTF-16 code units in one segment of text that is not GSM-7 (sent as UCS-2)."""
TWO_UCS2: Final = 134
"""Two concatenated UCS-2 segments (67 each, past the 6-byte header)."""
MIN_SMS_MESSAGE: Final = 40
"""Characters of the alert's message an SMS keeps however long the rest of it is: a page
whose service name is long still says what is wrong, over more segments."""
MAX_SHORT: Final = 1600
"""Twilio refuses a longer Body (error 21617): the SMS would never be sent."""
MAX_SUBJECT: Final = 200
MAX_BODY: Final = 64 * 1024
MAX_SLACK: Final = 3000
"""A Slack section block's text holds at most 3000 characters."""
SMS_CUT: Final = "..."
"""The marker of an SMS's cut message: GSM-7, so that it does not make the SMS Unicode."""

DEFAULTS: Final[Mapping[str, str]] = {
    "email_subject": "[pager] {{ service }} unhealthy (level {{ level }}): {{ message }}",
    "email_body": (
        "{{ service }} is unhealthy.\n"
        "\n"
        "Service:   {{ service }}\n"
        "Incident:  {{ incident }}\n"
        "Level:     {{ level }} (round {{ round }})\n"
        "Alert:     {{ message or '(no message)' }}\n"
        "{% if link %}"
        "Source:    {{ link }}\n"
        "{% endif %}"
        "Opened at: {{ opened_at }}\n"
        "{% if via %}"
        "Paged via: {{ via }}\n"
        "{% endif %}"
        "\n"
        "{% if ack_url %}"
        "Acknowledge to stop the escalation:\n"
        "    {{ ack_url }}\n"
        "{% if resolve_url %}"
        "Resolve (close the incident):\n"
        "    {{ resolve_url }}\n"
        "{% endif %}"
        "or, on pagerd's host:\n"
        "{% else %}"
        "Acknowledge to stop the escalation:\n"
        "{% endif %}"
        "    {{ ack_command }}\n"
        "\n"
        "Notification {{ notification }}\n"
    ),
    "sms": (
        "[pager] {{ service }} level {{ level }}: {{ message }}"
        " -- {{ reply_hint or 'ack: ' ~ ack_command }}"
    ),
    "slack": (
        "[pager] {{ service }} level {{ level }}: {{ message }}"
        " -- ack: {{ ack_command }}\n"
        "incident {{ incident }}, round {{ round }}, opened {{ opened_at }}"
        " (notification {{ notification }})"
        "{% if link %}\n<{{ link }}|Source>{% endif %}"
        "{% if ack_url %}\n<{{ ack_url }}|Acknowledge>"
        "{% if resolve_url %} · <{{ resolve_url }}|Resolve>{% endif %}{% endif %}"
    ),
}
"""What each channel says unless the config overrides it: today's words, with the links."""

_BREAKS: Final = re.compile(r"[\r\n\t\v\f\x1c-\x1e\x85\u2028\u2029]+")

# GSM 03.38: the basic set (one septet each) and its extension table (two: escape + char).
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED: Final = frozenset("^{}\\[~]|€\f")


@attrs.frozen
class Page:
    """The values of one notification's variables (see `VARIABLES`), as the daemon knows them;
    `message` as the client sent it: each form makes it fit."""

    service: str
    incident: str
    number: int
    message: str
    level: int
    round: int
    opened_at: str
    target: str
    notification: str
    ack_url: str = ""
    resolve_url: str = ""
    reply_hint: str = ""
    person: str = ""
    via: str = ""
    link: str = ""

    @property
    def ack_command(self) -> str:
        return f"pager ack {self.service}"

    def values(self, message: str) -> dict[str, Any]:
        values = attrs.asdict(self)
        values["message"] = message
        values["ack_command"] = self.ack_command
        return values


SAMPLE: Final = Page(
    service="payments-api",
    incident="payments-api#3",
    number=3,
    message="p99 > 2s",
    level=2,
    round=1,
    opened_at="2027-01-15T08:00:00.000Z",
    target="email:alice@example.com",
    notification="payments-api#3/1/2/email:alice@example.com",
    ack_url="https://pager.example/ack/TOKEN",
    resolve_url="https://pager.example/resolve/TOKEN",
    reply_hint="Reply 4a to acknowledge, 4c to close",
    person="alice",
    via="schedule:payments-primary → alice",
    link="http://prometheus:9090/graph?g0.expr=up",
)
"""A page with every variable given: what a template is tried on when the config loads."""


def slack_escape(text: str) -> str:
    """Slack reads `<...>` as a link or a mention: a value must not be able to page `<!channel>`
    or disguise a link. Its documented escapes, and only those."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finalize_slack(value: Any) -> Any:
    return slack_escape(value) if isinstance(value, str) else value


def _environment(finalize: Callable[[Any], Any] | None = None) -> jinja2.Environment:
    # Immutable sandbox: a template reaches nothing but its variables, and changes none of them.
    # StrictUndefined: a name that is not a variable fails (at load, by `problem`).
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )


_PLAIN: Final = _environment()
_SLACK: Final = _environment(_finalize_slack)


def _environment_of(form: str) -> jinja2.Environment:
    return _SLACK if form == "slack" else _PLAIN


def problem(form: str, source: str) -> str | None:
    """Why `source` cannot be the `form` template, or None: not Jinja2, a variable that is not
    in `VARIABLES`, or an error when tried on a sample page."""
    env = _environment_of(form)
    try:
        unknown = sorted(
            jinja2.meta.find_undeclared_variables(env.parse(source)) - VARIABLES.keys()
        )
    except jinja2.TemplateSyntaxError as exc:
        return f"not a valid template: {exc.message} (line {exc.lineno})"
    if unknown:
        names = ", ".join(unknown)
        return f"unknown variable {names} (known: {', '.join(VARIABLES)})"
    try:
        env.from_string(source).render(SAMPLE.values(SAMPLE.message))
    except Exception as exc:  # whatever a template can raise: it is the config's error
        return f"cannot be rendered: {exc}"
    return None


@attrs.frozen(eq=False)
class Templates:
    """The four templates, compiled. Equal when their texts are (a reload that changes none
    keeps them)."""

    sources: Mapping[str, str]
    _compiled: dict[str, jinja2.Template] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        compiled = {
            form: _environment_of(form).from_string(self.sources.get(form, DEFAULTS[form]))
            for form in FORMS
        }
        object.__setattr__(self, "_compiled", compiled)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Templates) and self._texts() == other._texts()

    def __hash__(self) -> int:
        return hash(tuple(self._texts().items()))

    def _texts(self) -> dict[str, str]:
        return {form: self.sources.get(form, DEFAULTS[form]) for form in FORMS}

    def subject(self, page: Page) -> str:
        """One line: a header with a line break in it is refused by the email library."""
        message = clip(one_line(page.message or "alert"), MAX_SUBJECT)
        text = self._render("email_subject", page, message, MAX_SUBJECT + 100)
        return clip(one_line(text), MAX_SUBJECT + 100)

    def body(self, page: Page) -> str:
        return clip(self._render("email_body", page, lines(page.message), MAX_BODY), MAX_BODY)

    def sms(self, page: Page) -> str:
        """One line, in one segment where the rest of the text leaves the message room: all
        GSM-7, 160 septets; else (UCS-2) 70 units if the message fits whole, else two segments
        (134). The message is cut (marked `SMS_CUT`) to the room, down to `MIN_SMS_MESSAGE`
        characters; what the template says besides (a reply hint) is never cut."""
        rest = one_line(self._render("sms", page, "", MAX_SHORT))
        message = one_line(page.message or "alert")
        whole = rest + message
        if (septets := gsm_length(whole)) is not None:
            if septets > SMS_SEGMENT:
                message = _cut(message, SMS_SEGMENT - _gsm(rest), _gsm)
        elif ucs2_length(whole) > SEGMENT_UCS2:
            message = _cut(message, TWO_UCS2 - ucs2_length(rest), ucs2_length)
        return clip(one_line(self._render("sms", page, message, MAX_SHORT)), MAX_SHORT)

    def slack(self, page: Page) -> str:
        """Slack's mrkdwn: every value escaped (the template's own text is the operator's)."""
        message = clip(one_line(page.message or "alert"), MAX_SHORT)
        return clip(self._render("slack", page, message, MAX_SLACK), MAX_SLACK)

    def _render(self, form: str, page: Page, message: str, limit: int) -> str:
        """The template of `form` on `page`, read no further than `limit` characters past its
        bound (a loop cannot make a page of megabytes). A template that fails on this page
        (checked on a sample when loaded, it may still divide by zero here) gives way to the
        default: the page is sent all the same."""
        values = page.values(message)
        try:
            return _bounded(self._compiled[form].generate(values), limit)
        except Exception:
            return _bounded(_DEFAULT_COMPILED[form].generate(values), limit)


def _bounded(chunks: Iterator[str], limit: int) -> str:
    text: list[str] = []
    size = 0
    for chunk in chunks:
        text.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return "".join(text)


_DEFAULT_COMPILED: Final = {
    form: _environment_of(form).from_string(DEFAULTS[form]) for form in FORMS
}
DEFAULT_TEMPLATES: Final = Templates({})


def gsm_length(text: str) -> int | None:
    """The septets `text` takes in GSM-7, or None if it cannot be sent as GSM-7."""
    septets = 0
    for c in text:
        if c in _GSM_BASIC:
            septets += 1
        elif c in _GSM_EXTENDED:
            septets += 2
        else:
            return None
    return septets


def ucs2_length(text: str) -> int:
    """The UTF-16 code units `text` takes (an emoji takes two)."""
    return len(text.encode("utf-16-le")) // 2


def _gsm(text: str) -> int:
    return gsm_length(text) or 0


def _cut(message: str, room: int, size: Callable[[str], int]) -> str:
    """`message` whole if it takes at most `room` (by `size`), else its longest start that
    takes at most `room` with `SMS_CUT` after it, keeping `MIN_SMS_MESSAGE` characters."""
    if size(message) <= room:
        return message
    room -= size(SMS_CUT)
    keep, used = 0, 0
    for c in message:
        used += size(c)
        if used > room:
            break
        keep += 1
    keep = max(keep, MIN_SMS_MESSAGE)
    return message if keep >= len(message) else message[:keep] + SMS_CUT


def one_line(text: str) -> str:
    """`text` on one line (line breaks as spaces), control characters escaped."""
    return visible(_BREAKS.sub(" ", text))


def lines(text: str) -> str:
    return visible(text.replace("\r\n", "\n"))


def visible(text: str) -> str:
    """Control characters, which no reader of a page needs, escaped; line breaks kept."""
    return controls(text, keep="\n\t")
