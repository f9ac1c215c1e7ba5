"""Notification templates: the defaults keep today's words, a config's own are checked when it
loads, and what a client sent is never read as a template. A page to a person reached through a
`schedule:` target says who and how, and its link acknowledges as that person."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import attrs
import httpx
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.domain import Notify, Target
from pager.messages import page
from pager.templates import DEFAULT_TEMPLATES, SMS_SEGMENT, Templates, gsm_length, one_line
from pager.text import split_link, with_link
from pagerd.access.keys import SigningKeys
from pagerd.access.links import Link
from pagerd.config import Config, load
from pagerd.config.templates import link_note
from pagerd.delivery.transports.smtp import SmtpTransport
from pagerd.delivery.wording import Wording
from pagerd.main import main
from pagerd.timing.clock import Clock
from tests.harness import CHANNELS, ONCALL, connect, errors_of, running, until
from tests.http_clients import senders
from tests.servers import HttpServer, SmtpServer
from tests.test_transports import T0, smtp_settings

SERVICES = '\n[services.api]\npolicy = "oncall"\n'


def notify(target: str = "email:alice@example.com", message: str = "p99 > 2s") -> Notify:
    return Notify("payments-api", 3, 1, 2, Target.parse(target), message, T0)


def test_the_default_sms_fits_one_segment_and_says_how_to_acknowledge() -> None:
    text = DEFAULT_TEMPLATES.sms(page(notify("sms:+14155550100", "disk full on db-3 " * 20)))
    assert gsm_length(text) == SMS_SEGMENT  # septets: "[" and "]" take two each
    assert text.startswith("[pager] payments-api level 2: disk full on db-3")
    assert text.endswith("... -- ack: pager ack payments-api")
    hinted = page(notify("sms:+14155550100"), reply_hint="Reply 4a to acknowledge, 4c to close")
    assert DEFAULT_TEMPLATES.sms(hinted) == (
        "[pager] payments-api level 2: p99 > 2s -- Reply 4a to acknowledge, 4c to close"
    )


def test_the_email_carries_the_links_and_still_the_command() -> None:
    links = page(notify(), "https://pager.example/ack/T", "https://pager.example/resolve/T")
    body = DEFAULT_TEMPLATES.body(links)
    assert "Acknowledge to stop the escalation:\n    https://pager.example/ack/T\n" in body
    assert "Resolve (close the incident):\n    https://pager.example/resolve/T\n" in body
    assert "pager ack payments-api" in body
    no_resolve = DEFAULT_TEMPLATES.body(page(notify(), "https://pager.example/ack/T"))
    assert "Resolve" not in no_resolve


def test_slack_links_are_slack_links_and_values_are_escaped() -> None:
    message = "<!channel> see <https://evil.example|runbook> & {{ 7 * 7 }}"
    text = DEFAULT_TEMPLATES.slack(
        page(notify("slack:https://hooks.slack.com/x", message), "https://p.example/ack/T?a=1&b")
    )
    assert "&lt;!channel&gt; see &lt;https://evil.example|runbook&gt; &amp; {{ 7 * 7 }}" in text
    assert "<https://p.example/ack/T?a=1&amp;b|Acknowledge>" in text
    assert "<!channel>" not in text


GENERATOR: Final = (
    "http://prometheus-k8s-0.monitoring:9090/graph?g0.expr=up%7Bjob%3D%22api%22%7D&g0.tab=1"
)


def test_an_alert_s_link_stays_out_of_the_sms_and_the_subject() -> None:
    """Alertmanager's `generatorURL`, after the summary in the message, is the page's `link`:
    in the email's body and in Slack, not where it would eat the SMS's segment or the subject."""
    message = with_link("Disk /var is 95% full on db-1", GENERATOR)
    sms = DEFAULT_TEMPLATES.sms(page(notify("sms:+14155550100", message)))
    assert sms == (
        "[pager] payments-api level 2: Disk /var is 95% full on db-1 -- ack: pager ack payments-api"
    )
    subject = DEFAULT_TEMPLATES.subject(page(notify(message=message)))
    assert subject == "[pager] payments-api unhealthy (level 2): Disk /var is 95% full on db-1"
    body = DEFAULT_TEMPLATES.body(page(notify(message=message)))
    assert f"Alert:     Disk /var is 95% full on db-1\nSource:    {GENERATOR}\n" in body
    slack = DEFAULT_TEMPLATES.slack(page(notify("slack:app", message)))
    assert f"<{GENERATOR.replace('&', '&amp;')}|Source>" in slack
    assert "level 2: Disk /var is 95% full on db-1 -- ack" in slack
    # A template of the config's may place it where it likes.
    custom = Templates({"sms": "{{ message }} {{ link }}"})
    assert custom.sms(
        page(notify("sms:+14155550100", with_link("down", "https://x.example/a")))
    ) == ("down https://x.example/a")
    # Only an http(s) URL of plain characters is a link; anything else stays in the message.
    for kept in ("down <javascript:alert(1)>", 'down <http://x.example/"onclick>', "down"):
        p = page(notify(message=kept))
        assert (p.message, p.link) == (kept, "")


urls = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?#[]@!$&()*+,;=%",
        min_size=1,
        max_size=60,
    ),
)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=100), url=urls, other=st.text(max_size=120))
def test_a_link_is_split_off_exactly_and_nothing_else_is(text: str, url: str, other: str) -> None:
    assert split_link(with_link(text, url)) == (text, url)
    message, link = split_link(other)
    assert (message, link) == (other, "") or (with_link(message, link) == other and link)


@settings(max_examples=200, deadline=None)
@given(message=st.text(max_size=300))
def test_a_message_is_never_read_as_a_template(message: str) -> None:
    """Whatever a client sends (`{{ }}`, `{% %}`, `{# #}`, raw blocks), it is the message's
    text in the page, never run: each form shows it as it shows any text."""
    custom = Templates({"sms": "{{ message }}|{{ service }}", "email_subject": "{{ message }}"})
    p = page(notify(message=message))
    shown = one_line(message or "alert")
    sms = custom.sms(p)
    assert sms.endswith("|payments-api")
    assert shown.startswith(sms.removesuffix("|payments-api").removesuffix("..."))
    assert custom.subject(p).startswith(shown[:150])


def test_a_config_s_templates_are_checked_when_it_loads(tmp_path: Path) -> None:
    text = CHANNELS + ONCALL + SERVICES
    errors = errors_of(
        tmp_path,
        text
        + "\n[templates]\n"
        + 'sms = "{{ service }} {{ severity }}"\n'
        + 'email_subject = "{% if %}"\n'
        + 'slack = "{{ message | nosuchfilter }}"\n'
        + 'fax = "{{ service }}"\n'
        + "email_body = 3\n",
    )
    assert errors == [
        "templates.sms: unknown variable severity (known: service, incident, number, message,"
        " level, round, opened_at, target, person, via, notification, ack_command, ack_url,"
        " resolve_url, reply_hint, link)",
        "templates.email_subject: not a valid template: Expected an expression, got 'end of"
        " statement block' (line 1)",
        "templates.slack: not a valid template: No filter named 'nosuchfilter'. (line 1)",
        "templates.fax: unknown key (known: email_subject, email_body, sms, slack)",
        "templates.email_body: expected a string",
    ]


def test_a_template_reaches_nothing_but_its_variables(tmp_path: Path) -> None:
    """The sandbox: no attribute of Python's own, however a template goes for it."""
    text = CHANNELS + ONCALL + SERVICES
    errors = errors_of(tmp_path, text + '\n[templates]\nsms = "{{ service.__class__.__mro__ }}"\n')
    assert len(errors) == 1 and errors[0].startswith("templates.sms: cannot be rendered")


async def test_a_config_s_own_templates_and_links_reach_a_real_email(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    path.write_text(
        CHANNELS
        + ONCALL
        + SERVICES
        + '\n[http]\npublic_url = "https://pager.example/"\n'
        + "\n[templates]\n"
        + 'email_subject = "{{ incident }} needs you: {{ message }}"\n'
        + 'email_body = """Hi {{ target }},\n{{ message }}\nAck: {{ ack_url }}\n"""\n'
    )
    config = load(path)
    keys = SigningKeys.load_or_create(tmp_path)
    wording = Wording(lambda: config, lambda: keys)
    n = Notify("api", 1, 1, 1, Target.parse("email:alice@example.com"), "{{ 7*7 }}", T0)
    with SmtpServer() as server, trio.fail_after(10):
        await SmtpTransport(smtp_settings(server.port), 5.0, 1, Clock(T0), wording).send(n)
    (got,) = server.received
    assert got.message["Subject"] == "api#1 needs you: {{ 7*7 }}"
    payload = got.message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode().replace("\r\n", "\n")  # SMTP's line ends
    assert body.startswith(
        "Hi email:alice@example.com,\n{{ 7*7 }}\nAck: https://pager.example/ack/"
    )
    token = body.split("/ack/", 1)[1].split()[0]
    assert Link.open(keys, token) == Link("api", 1, T0, "email:alice@example.com")


def test_without_public_url_no_links_and_check_says_so(tmp_path: Path) -> None:
    (tmp_path / "pager.toml").write_text(CHANNELS + ONCALL + SERVICES)
    config = load(tmp_path / "pager.toml")
    keys = SigningKeys.load_or_create(tmp_path)
    assert Wording(lambda: config, lambda: keys).page(notify()).ack_url == ""
    assert link_note(config.channels, config.http.public_url) == (
        "http.public_url is not set: email pages carry no acknowledge links (see docs/answering.md)"
    )


def test_the_documented_examples_load_and_say_what_the_docs_say(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "answering.md").read_text()
    # The policy and the templates (the Slack channel's block is tested with Slack buttons).
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.DOTALL) if "[channels." not in b]
    assert len(blocks) == 2
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS + "".join(blocks) + '\n[services.api]\npolicy = "payments-oncall"\n')
    config = load(path)
    policy = config.policies["payments-oncall"]
    assert (policy.ack_expiry, policy.allow_resolve) == (4 * 3600.0, True)
    sms = config.templates.sms(page(notify("sms:+14155550100")))
    assert sms == "payments-api L2: p99 > 2s -- ack: pager ack payments-api"


RUNNING: Final = """
[daemon]
socket = "pager.sock"
state_dir = "state"

[http]
listen = "127.0.0.1:0"
public_url = "https://pager.example/"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
port = {smtp}
sender = "pager@example.com"
security = "none"
timeout = "5s"
[channels.slack]
transport = "slack"
timeout = "5s"

[policies.oncall]
[[policies.oncall.levels]]
targets = ["email:alice@example.com", "slack:{hook}/services/T0/B0/HOOKSECRET"]
ack_timeout = "1h"
[policies.ack_only]
allow_resolve = false
[[policies.ack_only.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "1h"

[services.api]
policy = "oncall"
[services.web]
policy = "ack_only"

[templates]
email_subject = "{subject} {{{{ incident }}}}: {{{{ message }}}}"
slack = "{{{{ incident }}}} {{{{ message }}}} <{{{{ ack_url }}}}|ack>"
"""


def running_config(folder: Path, smtp: SmtpServer, hook: HttpServer, subject: str) -> Config:
    text = RUNNING.format(smtp=smtp.port, hook=hook.url, subject=subject)
    (folder / "pager.toml").write_text(text)
    return load(folder / "pager.toml")


def links(body: str) -> dict[str, str]:
    """The links in an email's body, by action: their tokens."""
    return dict(re.findall(r"https://pager\.example/(ack|resolve)/(\S+)", body))


def email_body(smtp: SmtpServer, i: int) -> str:
    payload = smtp.received[i].message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def test_a_running_pagerd_s_pages_carry_its_templates_and_links_and_a_reload_s(
    tmp_path: Path, delivery_workers: int | None
) -> None:
    """What a page says, end to end, from pagerd sending in its own process or through its
    delivery workers (which word pages themselves from what pagerd gives them): the config's
    templates, the links signed with pagerd's key (a resolve link only where the policy allows
    it), and after a reload with new templates and a rotated key, those, from the next page."""
    with SmtpServer() as smtp, HttpServer() as hook, trio.fail_after(60):
        config = running_config(tmp_path, smtp, hook, "Paging:")
        daemon_running = running(config, offload=None, delivery_workers=delivery_workers)
        async with daemon_running as daemon, connect(config.socket) as conn:
            assert (await conn.request("alert", service="api", message="{{ 7*7 }}"))["ok"]
            await until(lambda: smtp.received and hook.requests, "api's pages")
            assert (await conn.request("alert", service="web", message="slow"))["ok"]
            await until(lambda: len(smtp.received) == 2, "web's page")
            first_keys = daemon.keys

            assert smtp.received[0].message["Subject"] == "Paging: api#1: {{ 7*7 }}"
            api_links = links(email_body(smtp, 0))
            api = daemon.services.state("api").incident
            assert api is not None
            assert api_links.keys() == {"ack", "resolve"}
            assert Link.open(first_keys, api_links["ack"]) == Link(
                "api", 1, api.opened_at, "email:alice@example.com"
            )
            slack_text = hook.requests[0].json()["text"]
            token = re.fullmatch(
                r"api#1 \{\{ 7\*7 \}\} <https://pager\.example/ack/(\S+)\|ack>", slack_text
            )
            assert token is not None
            assert Link.open(first_keys, token.group(1)) is not None
            assert links(email_body(smtp, 1)).keys() == {"ack"}  # web's policy: no resolve

            # New templates and a new key, by a reload: the next page has both.
            running_config(tmp_path, smtp, hook, "Again:")
            assert main(["rotate-key", "--config", str(config.path)]) == 0
            assert await daemon.reload()
            assert daemon.keys.keys[1:] == first_keys.keys
            assert (await conn.request("healthy", service="web"))["ok"]
            assert (await conn.request("alert", service="web", message="slow"))["ok"]
            await until(lambda: len(smtp.received) == 3, "web#2's page")
        assert smtp.received[2].message["Subject"] == "Again: web#2: slow"
        ack = links(email_body(smtp, 2))["ack"]
        assert Link.open(SigningKeys(daemon.keys.keys[:1]), ack) is not None
        assert Link.open(first_keys, ack) is None
        if delivery_workers != 0:
            assert senders(hook.requests) == {"curl"}


def test_a_page_reached_through_a_schedule_says_who_and_how() -> None:
    n = Notify(
        "payments-api", 3, 1, 2, Target.parse("email:alice@example.com"), "p99 > 2s", T0,
        via="schedule:payments-primary → alice",
    )  # fmt: skip
    values = page(n)
    assert (values.target, values.person, values.via) == (
        "email:alice@example.com",
        "alice",
        "schedule:payments-primary → alice",
    )
    assert "Paged via: schedule:payments-primary → alice\n" in DEFAULT_TEMPLATES.body(values)
    assert page(attrs.evolve(n, via="person:alice")).person == "alice"
    plain = page(notify())
    assert (plain.person, plain.via) == ("", "")
    assert "Paged via" not in DEFAULT_TEMPLATES.body(plain)


SCHEDULED = """
[daemon]
socket = "pager.sock"
state_dir = "state"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
port = {port}
sender = "pager@example.com"
security = "none"
timeout = "2s"

[http]
listen = "127.0.0.1:0"
workers = 0
public_url = "https://pager.example/"

[templates]
email_subject = "{{{{ incident }}}} for {{{{ person or target }}}} ({{{{ target }}}})"

[people.alice]
email = "alice@example.com"

[schedules.primary]
timezone = "Europe/London"
[[schedules.primary.layers]]
people = ["alice"]
shift = "1w"
start = 2020-01-06

[policies.rota]
[[policies.rota.levels]]
targets = ["schedule:primary"]
ack_timeout = "5m"

[services.api]
policy = "rota"
"""


async def test_a_schedule_s_page_names_the_person_and_its_link_acknowledges_as_them(
    tmp_path: Path,
) -> None:
    """A real email, through SMTP on 127.0.0.1, of a page to `schedule:primary`: its subject
    (the config's template) and body say the person and the address, and its acknowledge link,
    posted, acknowledges as alice."""
    with SmtpServer() as server, trio.fail_after(30):
        (tmp_path / "pager.toml").write_text(SCHEDULED.format(port=server.port))
        config = load(tmp_path / "pager.toml")
        async with running(config, offload=None) as daemon:
            async with connect(config.socket) as conn:
                assert (await conn.request("alert", service="api", message="down"))["ok"]
            await until(lambda: server.received, "the email")
            (got,) = server.received
            assert got.message["Subject"] == "api#1 for alice (email:alice@example.com)"
            payload = got.message.get_payload(decode=True)
            assert isinstance(payload, bytes)
            body = payload.decode().replace("\r\n", "\n")  # SMTP's line ends
            assert "Paged via: schedule:primary → alice\n" in body
            token = body.split("https://pager.example/ack/", 1)[1].split()[0]
            assert daemon.keys is not None
            link = Link.open(daemon.keys, token)
            assert link is not None and link.by == "alice"
            assert daemon.http is not None
            url = f"http://127.0.0.1:{daemon.http.ports[0]}"
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                done = await client.post("/ack", data={"token": token})
            assert done.status_code == 200, done.text
            async with connect(config.socket) as conn:
                status = await conn.request("status", service="api")
            incident = status["incident"]
            assert (incident["acknowledged_by"], incident["acknowledged_via"]) == ("alice", "link")
