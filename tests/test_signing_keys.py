"""pagerd's signing keys: made once, 0600, kept across restarts, rotated with one kept behind,
and tokens that only these keys, for this purpose, open."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagerd.access.keys import FILE_NAME, KeyFileError, SigningKeys

KEYS = SigningKeys((b"k" * 32,))


def test_made_on_first_start_private_and_kept(tmp_path: Path) -> None:
    first = SigningKeys.load_or_create(tmp_path / "state")
    path = tmp_path / "state" / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKeys.load_or_create(tmp_path / "state") == first
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]  # no temporary left


def test_a_rotation_keeps_the_previous_key_for_verifying_only(tmp_path: Path) -> None:
    keys = SigningKeys.load_or_create(tmp_path)
    token = keys.token("link", b"api#1")
    once = keys.rotated()
    once.save(tmp_path)
    reread = SigningKeys.load(tmp_path / FILE_NAME)
    assert reread == once and len(reread.keys) == 2
    assert reread.open("link", token) == b"api#1"
    assert reread.token("link", b"api#1") != token  # signs with the new key
    assert reread.rotated().open("link", token) is None  # two rotations: gone


def test_a_token_opens_only_for_its_purpose_and_untouched() -> None:
    token = KEYS.token("link", b"api#1 alice")
    assert KEYS.open("link", token) == b"api#1 alice"
    assert KEYS.open("session", token) is None
    payload, _, mac = token.partition(".")
    assert KEYS.open("link", payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")) is None
    assert KEYS.open("link", token.replace(payload, payload[:-1])) is None
    assert SigningKeys((b"o" * 32,)).open("link", token) is None


@given(st.text(max_size=200))
def test_anything_else_is_no_token(text: str) -> None:
    assert KEYS.open("link", text) is None


def test_a_bad_key_file_is_a_clear_error_that_never_quotes_it(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text("not-hex-secret-material\n")
    with pytest.raises(KeyFileError) as error:
        SigningKeys.load_or_create(tmp_path)
    assert str(path) in str(error.value) and "secret" not in str(error.value)


def test_repr_never_shows_a_key() -> None:
    assert "6b6b" not in repr(KEYS) and "kkkk" not in repr(KEYS)
