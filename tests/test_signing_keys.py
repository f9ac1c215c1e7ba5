"""pagerd's signing keys: made once, 0600, kept across restarts, rotated with one kept behind,
and tokens that only these keys, for this purpose, open."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from pager.cli import render
from pagerd.access.keys import FILE_NAME, KeyFileError, SigningKeys
from pagerd.main import main
from tests.harness import connect, metric_samples, metrics_text, running, write_config

READABLE = "pagerd_signing_keys_readable"

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


def test_rotate_key_on_a_node_of_a_cluster_says_to_copy_the_key_to_every_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each node verifies with its own copy: the command says so where it knows it runs on a
    shared store, without reading the DSN (a credential only systemd can read)."""
    config = tmp_path / "pager.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n[storage]\nbackend = "postgresql"\n'
        'dsn_credential = "not-readable-here"\n'
    )
    assert main(["rotate-key", "--config", str(config)]) == 0
    said = capsys.readouterr().out
    assert f"copy {FILE_NAME} to every other node first" in said
    config.write_text('[daemon]\nstate_dir = "state"\n')
    assert main(["rotate-key", "--config", str(config)]) == 0
    assert "every other node" not in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
@pytest.mark.parametrize("there", [True, False], ids=["replaced", "made"])
def test_rotate_key_run_as_root_keeps_the_file_pagerd_s_user_s(
    tmp_path: Path, there: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """pagerd runs as its own user, and the docs let root rotate its key: the file it writes
    (0600) is still that user's, or the next reload (and start) could not read it. With no
    file yet, the state folder's owner gets it."""
    nobody = pwd.getpwnam("nobody")
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    path = state / FILE_NAME
    before = None
    if there:
        before = SigningKeys((b"b" * 32,))
        path.write_text(before.keys[0].hex() + "\n")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        path.chmod(0o600)
    (tmp_path / "pager.toml").write_text('[daemon]\nstate_dir = "state"\n')
    assert main(["rotate-key", "--config", str(tmp_path / "pager.toml")]) == 0
    assert "reload pagerd" in capsys.readouterr().out
    found = path.stat()
    assert (found.st_uid, found.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(found.st_mode) == 0o600
    keys = SigningKeys.load(path)
    assert len(keys.keys) == 2  # a new key first, the one before kept (or made just now)
    if before is not None:
        assert keys.keys[1] == before.keys[0]
    assert sorted(p.name for p in state.iterdir()) == [FILE_NAME]  # no temporary left


async def test_a_reload_that_cannot_read_the_keys_says_so_until_one_can(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The running pagerd signs with the keys it read before, and says that a reload could
    not read them: in the reload's reply (and `pager reload`'s words), in `ping`'s config and
    in a metric, since the next start would fail."""
    config = write_config(tmp_path)
    path = config.state_dir / FILE_NAME
    with trio.fail_after(60):
        async with running(config) as daemon, connect(config.socket) as conn:
            keys = daemon.keys
            assert metric_samples(await metrics_text(config.socket))[READABLE] == 1
            good = path.read_text()
            path.write_text("not a key\n")  # a file pagerd cannot use
            reply = await conn.request("reload")
            assert reply["ok"], reply  # the config itself was reloaded
            problem = reply["config"]["signing_keys"]
            assert problem["ok"] is False and str(path) in problem["error"]
            assert "warning: cannot read the signing keys" in render("reload", reply)
            assert daemon.keys is keys  # still signing with the keys read before
            assert metric_samples(await metrics_text(config.socket))[READABLE] == 0
            ping = await conn.request("ping")
            assert ping["config"]["signing_keys"]["ok"] is False
            path.write_text(good)
            fixed = await conn.request("reload")
            assert "signing_keys" not in fixed["config"]
            assert "warning" not in render("reload", fixed)
            assert metric_samples(await metrics_text(config.socket))[READABLE] == 1
