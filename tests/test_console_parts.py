"""The console's parts on their own: password hashes, sessions and CSRF tokens, the sign-in
lock-out, the strict form reader, `[console]` in the config, and `pagerd hash-password`."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pagerd.main
from pagerd.access.keys import SigningKeys
from pagerd.access.passwords import (
    DUMMY,
    MAX_PASSWORD_BYTES,
    PasswordError,
    PasswordHash,
    hash_password,
)
from pagerd.access.sessions import (
    NOTICE_LIFETIME,
    csrf_token,
    csrf_valid,
    new_session,
    notice_token,
    open_notice,
    open_session,
    session_cookie,
    sign_in_nonce,
    sign_in_valid,
)
from pagerd.config import ConfigError
from pagerd.front.http.console.forms import FormError, read_form
from pagerd.front.http.console.lockout import Attempt, SignInGuard
from tests.console import LOG_N, console_config, user_table
from tests.http import http_config
from tests.processes import PAGERD

KEYS = SigningKeys((bytes(range(32)),))
FORM = {"content-type": "application/x-www-form-urlencoded"}


# Passwords ----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(password=st.text(min_size=1, max_size=40), other=st.text(max_size=40))
def test_a_hash_matches_its_password_and_no_other(password: str, other: str) -> None:
    hashed = PasswordHash.parse(hash_password(password, log_n=LOG_N))
    assert hashed.matches(password)
    assert hashed.matches(other) == (other == password)


def test_a_hash_says_its_parameters_and_a_new_salt_each_time() -> None:
    one, two = hash_password("pw", log_n=LOG_N), hash_password("pw", log_n=LOG_N)
    assert one.startswith(f"$scrypt$ln={LOG_N},r=8,p=3$") and one != two
    assert hash_password("pw").startswith("$scrypt$ln=15,r=8,p=3$")  # the documented default
    assert "$" not in repr(PasswordHash.parse(one)).replace("scrypt", "")


@pytest.mark.parametrize(
    "text",
    ["", "hunter2", "$scrypt$ln=15,r=8,p=3$short$short",
     "$scrypt$ln=40,r=8,p=1$" + "A" * 22 + "$" + "B" * 43,
     "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
     "$scrypt$ln=15,r=8,p=3$" + "A" * 21 + "$" + "B" * 43],
)  # fmt: skip
def test_what_is_not_a_hash_is_refused_without_being_quoted(text: str) -> None:
    with pytest.raises(PasswordError) as caught:
        PasswordHash.parse(text)
    assert text not in str(caught.value) or not text


def test_empty_and_huge_passwords() -> None:
    with pytest.raises(PasswordError):
        hash_password("")
    with pytest.raises(PasswordError):
        hash_password("x" * (MAX_PASSWORD_BYTES + 1))
    assert not PasswordHash.parse(hash_password("x", log_n=LOG_N)).matches("x" * 10_000)
    assert not DUMMY.matches("") and not DUMMY.matches("password")


# Sessions and CSRF --------------------------------------------------------------------------


def test_a_session_cookie_opens_until_it_expires_and_not_once_tampered() -> None:
    session = new_session("alice", 1000.0, 60.0, "$scrypt$...")
    cookie = session_cookie(KEYS, session)
    assert open_session(KEYS, cookie, 1059.0) == session
    assert open_session(KEYS, cookie, 1060.0) is None
    payload, _, mac = cookie.partition(".")
    assert open_session(KEYS, payload + "." + mac[::-1], 1000.0) is None
    other = session_cookie(KEYS, attrs.evolve(session, user="root")).partition(".")[0]
    assert open_session(KEYS, other + "." + mac, 1000.0) is None  # another payload, this MAC
    assert open_session(SigningKeys((bytes(32),)), cookie, 1000.0) is None  # another pagerd's
    # A token made for another purpose (a link, a sign-in form) is no session.
    assert open_session(KEYS, KEYS.token("link", payload.encode()), 1000.0) is None
    assert "alice" in repr(session) and session.id not in repr(session)


def test_a_csrf_token_is_good_for_its_own_session_only() -> None:
    one, two = new_session("a", 0, 60, None), new_session("a", 0, 60, None)
    token = csrf_token(KEYS, one.id)
    assert csrf_valid(KEYS, one.id, token)
    assert not csrf_valid(KEYS, two.id, token)
    assert not csrf_valid(KEYS, one.id, "")
    assert not csrf_valid(KEYS, one.id, "not hex")
    cookie, form_token = sign_in_nonce(KEYS)
    assert sign_in_valid(KEYS, cookie, form_token)
    _, other_token = sign_in_nonce(KEYS)
    assert not sign_in_valid(KEYS, cookie, other_token)
    assert not sign_in_valid(KEYS, "", form_token)


# The lock-out ---------------------------------------------------------------------------------


def test_a_user_is_locked_out_after_its_failures_then_forgiven() -> None:
    guard = SignInGuard()
    for _ in range(2):
        guard.failed("alice", "10.0.0.1", 0.0, 3, 600.0)
        assert guard.retry_after("alice", "10.0.0.1", 0.0) is None
    guard.failed("alice", "10.0.0.2", 0.0, 3, 600.0)  # from anywhere: the name counts
    assert guard.retry_after("alice", "10.0.0.3", 1.0) == 599
    assert guard.retry_after("bob", "10.0.0.3", 1.0) is None
    assert guard.retry_after("alice", "10.0.0.3", 600.0) is None


def test_an_address_is_locked_out_after_four_times_as_many() -> None:
    guard = SignInGuard()
    for i in range(11):
        guard.failed(f"name{i}", "10.0.0.1", 0.0, 3, 60.0)
    assert guard.retry_after("anyone", "10.0.0.1", 0.0) is None
    guard.failed("name11", "10.0.0.1", 0.0, 3, 60.0)
    assert guard.retry_after("anyone", "10.0.0.1", 0.0) == 60


def test_an_attempt_counts_before_its_check_and_a_right_one_is_taken_back() -> None:
    guard = SignInGuard()
    attempts = [guard.attempt("alice", "10.0.0.1", 0.0, 3, 600.0) for _ in range(4)]
    assert [isinstance(a, Attempt) for a in attempts] == [True, True, True, False]
    assert attempts[3] == 600  # locked by the three let through, before any check ended
    # Another address, other names, up to the address's last allowed attempt: the right one.
    for i in range(11):
        assert isinstance(guard.attempt(f"name{i}", "10.0.0.2", 0.0, 3, 60.0), Attempt)
    last = guard.attempt("bob", "10.0.0.2", 0.0, 3, 60.0)
    assert isinstance(last, Attempt) and guard.retry_after("carol", "10.0.0.2", 0.0) == 60
    guard.succeeded(last)  # it was no failure: the lock it set is taken back, not the others
    assert guard.retry_after("carol", "10.0.0.2", 0.0) is None
    assert guard.retry_after("bob", "10.0.0.2", 0.0) is None
    assert isinstance(guard.attempt("carol", "10.0.0.2", 0.0, 3, 60.0), Attempt)
    assert guard.retry_after("dave", "10.0.0.2", 0.0) == 60  # one more failure locks again


@settings(max_examples=20, deadline=None)
@given(names=st.lists(st.text(max_size=8), min_size=1, max_size=300))
def test_the_lockout_remembers_a_bounded_number(names: list[str]) -> None:
    guard = SignInGuard(size=16)
    for i, name in enumerate(names):
        guard.failed(name, f"10.0.{i // 256}.{i % 256}", float(i), 5, 60.0)
        assert len(guard) <= 32


# Forms -----------------------------------------------------------------------------------------


def test_a_form_is_read_strictly() -> None:
    fields = frozenset({"csrf", "username"})
    assert read_form(FORM, b"csrf=a%20b&username=%C3%A9", fields) == {
        "csrf": "a b",
        "username": "é",
    }
    for body, status in [
        (b"csrf=a", 400),  # a field missing
        (b"csrf=a&username=b&x=c", 400),  # a field it does not take
        (b"csrf=a&csrf=b&username=c", 400),  # twice
        (b"csrf=%FF&username=b", 400),  # not UTF-8
        (b"csrf=\xff&username=b", 400),  # not ASCII
        (b"csrf&username", 400),  # no values
        (b"x" * 5000, 413),
    ]:
        with pytest.raises(FormError) as caught:
            read_form(FORM, body, fields)
        assert caught.value.status == status, body
    with pytest.raises(FormError) as caught:
        read_form({"content-type": "application/json"}, b"{}", fields)
    assert caught.value.status == 415


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
    kind=st.sampled_from(
        ["application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data"]
    ),
)
def test_any_body_is_a_form_or_a_clear_4xx(body: bytes, kind: str) -> None:
    try:
        form = read_form({"content-type": kind}, body, frozenset({"csrf"}))
    except FormError as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert set(form) == {"csrf"} and len(form["csrf"]) <= 1024


def test_a_notice_is_shown_to_its_own_session_for_a_while_only() -> None:
    token = notice_token(KEYS, "session-1", "Acknowledged api#1: escalation stopped.", 1000.0)
    assert open_notice(KEYS, "session-1", token, 1000.0) == (
        "Acknowledged api#1: escalation stopped."
    )
    assert open_notice(KEYS, "session-1", token, 1000.0 + NOTICE_LIFETIME) is not None
    assert open_notice(KEYS, "session-1", token, 1001.0 + NOTICE_LIFETIME) is None  # old
    assert open_notice(KEYS, "session-2", token, 1000.0) is None  # another session's
    assert open_notice(SigningKeys((bytes(32),)), "session-1", token, 1000.0) is None
    assert open_notice(KEYS, "session-1", token[:-2] + "AA", 1000.0) is None
    csrf = csrf_token(KEYS, "session-1")
    assert open_notice(KEYS, "session-1", csrf, 1000.0) is None  # a token of another kind
    payload = base64.urlsafe_b64decode(token.partition(".")[0] + "==")
    assert b"session-1" not in payload  # the address may travel: it does not name the session


# The config -------------------------------------------------------------------------------------


def test_console_users_load_with_their_settings(tmp_path: Path) -> None:
    config = console_config(tmp_path, console='trusted_proxies = ["127.0.0.1", "10.1.0.0/16"]\n')
    console = config.console
    assert console is not None
    assert set(console.users) == {"alice", "viewer"}
    assert console.users["viewer"].read_only and not console.users["alice"].read_only
    assert console.trusts("10.1.200.3") and not console.trusts("10.2.0.1")
    assert not console.trusts("not an address")
    assert "password" not in repr(console.users["alice"]).lower().replace("passwordhash", "")
    assert "$scrypt$" not in repr(console)


def test_the_console_is_off_without_its_table(tmp_path: Path) -> None:
    assert http_config(tmp_path).console is None


def console_errors(folder: Path, console: str) -> list[str]:
    """The errors of the HTTP harness's config with `console` added, which must not load."""
    try:
        http_config(folder, extra="\n" + console)
    except ConfigError as exc:
        return exc.errors
    raise AssertionError("the config loaded")


def test_every_console_mistake_is_named(tmp_path: Path) -> None:
    secret_hash = "$scrypt$ln=15,r=8,p=3$" + "A" * 21 + "$" + "B" * 43
    errors = console_errors(
        tmp_path,
        '[console]\ntrusted_proxies = ["not-an-ip"]\ntrusted_header = "X Forwarded"\n'
        'max_failed_sign_ins = 0\nrefresh = "100ms"\n'
        '[console.users."bad name!"]\npassword_hash = "x"\n'
        f'[console.users.bob]\npassword_hash = "{secret_hash}"\n'
        "[console.users.carol]\nread_only = 1\n",
    )
    joined = "\n".join(errors)
    for expected in (
        'console.users."bad name!": a user name is',
        "console.users.bob.password_hash: the salt or hash is not base64",
        "console.users.carol.read_only: expected a boolean",
        "console.trusted_proxies[0]: expected an IP address",
        "console.trusted_header: a header name",
        "console.max_failed_sign_ins: must be 1 or more",
        'console.refresh: at least "1s"',
    ):
        assert expected in joined, joined
    assert secret_hash not in joined
    unknown = console_errors(tmp_path, '[console]\ncolour = "red"\n' + user_table("alice"))
    assert unknown == ["console.colour: unknown key"]


def test_a_console_nobody_can_sign_in_to_is_refused(tmp_path: Path) -> None:
    errors = console_errors(tmp_path, "[console]\n")
    assert any("console: nobody can sign in" in e for e in errors)
    proxied = http_config(tmp_path, extra='\n[console]\ntrusted_proxies = ["::1"]\n')
    assert proxied.console is not None and proxied.console.trusts("::1")
    assert http_config(tmp_path, extra="\n[console]\n" + user_table("alice")).console is not None


def test_a_user_without_a_password_and_no_proxy_to_vouch_is_refused(tmp_path: Path) -> None:
    """bob has no password_hash and nothing trusts a proxy: bob could never sign in, which is
    a mistake to name at `pagerd --check`, not a page that refuses him at 3 a.m."""
    errors = console_errors(
        tmp_path, "[console]\n" + user_table("alice") + "[console.users.bob]\nread_only = true\n"
    )
    assert errors == [
        "console.users.bob: no password_hash and no console.trusted_proxies: bob can never"
        " sign in (add a password_hash from pagerd hash-password, or trusted_proxies)"
    ]
    proxied = http_config(
        tmp_path,
        extra='\n[console]\ntrusted_proxies = ["127.0.0.1"]\n[console.users.bob]\n',
    )
    assert proxied.console is not None and proxied.console.users["bob"].password is None
    # As `pagerd --check` says it, naming the key, exit 78.
    console_errors(tmp_path, "[console]\n[console.users.bob]\n")
    checked = subprocess.run(
        [*PAGERD, "--config", str(tmp_path / "pager.toml"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 78
    assert "console.users.bob: no password_hash and no console.trusted_proxies" in checked.stderr


# pagerd hash-password -----------------------------------------------------------------------


def test_hash_password_reads_standard_input_and_prints_a_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret phrase\n"))
    assert pagerd.main.main(["hash-password"]) == 0
    out, err = capsys.readouterr()
    assert PasswordHash.parse(out.strip()).matches("s3cret phrase")
    assert "s3cret" not in out + err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert pagerd.main.main(["hash-password"]) == 1
    assert "the password is empty" in capsys.readouterr().err
