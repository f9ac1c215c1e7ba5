"""Access after a reload, over the real socket with a real other user: a user the new config no
longer allows is cut off at once, not at their next connection; `reload` itself is for root and
pagerd's own user only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pagerd.config import load
from tests.harness import CHANNELS, ONCALL, connect, running

needs_root = pytest.mark.skipif(
    os.getuid() != 0 or not Path("/usr/bin/python3").exists(),
    reason="runs a client as user nobody: needs root and /usr/bin/python3",
)

# Sends one alert, prints its reply, then, once told to go on (a line on stdin), prints every
# line the daemon sends until it closes the connection.
CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"op": "alert", "service": "api"}).encode() + b"\\n")
replies = s.makefile()
print(replies.readline().strip(), flush=True)
sys.stdin.readline()
for line in replies:
    print(line.strip(), flush=True)
print("EOF", flush=True)
"""


def _config(folder: Path, allow: str) -> str:
    return (
        CHANNELS.replace('state_dir = "state"', f'state_dir = "state"\n{allow}')
        + ONCALL
        + '\n[services.api]\npolicy = "oncall"\n'
    )


async def _lines(stream: trio.abc.ReceiveStream, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


@needs_root
@pytest.mark.parametrize(
    "after", ['allow_users = ["daemon"]', 'allow_groups = ["root"]', 'allow_users = ["root"]']
)
async def test_a_reload_that_revokes_a_user_closes_their_open_connection(
    open_folder: Path, after: str
) -> None:
    path = open_folder / "pager.toml"
    path.write_text(_config(open_folder, 'allow_users = ["nobody"]'))
    config = load(path)
    with trio.fail_after(30):
        async with running(config, offload=None) as daemon:
            config.socket.chmod(0o666)  # let nobody reach the socket: the daemon must decide
            client = await trio.lowlevel.open_process(
                ["/usr/bin/python3", "-c", CLIENT, str(config.socket)],
                user="nobody",
                group="nogroup",
                extra_groups=[],
                stdin=-1,
                stdout=-1,
            )
            stdin, stdout = client.stdin, client.stdout
            assert stdin is not None and stdout is not None
            try:
                (first,) = await _lines(stdout, 1)
                path.write_text(_config(open_folder, after))
                assert await daemon.reload() is True
                await stdin.send_all(b"go\n")
                rest = await _lines(stdout, 2)
            finally:
                client.kill()
                await client.wait()
                await stdin.aclose()
                await stdout.aclose()
    assert json.loads(first)["ok"] is True
    refused: dict[str, Any] = json.loads(rest[0])
    assert refused["error"]["code"] == "forbidden"
    assert "revoked by a config reload" in refused["error"]["message"]
    assert rest[1:] == ["EOF"]


RELOAD_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"op": "reload"}\\n{"op": "ping"}\\n')
replies = s.makefile()
print(replies.readline().strip())
print(replies.readline().strip())
"""


@needs_root
async def test_reload_is_for_root_and_pagerds_own_user(open_folder: Path) -> None:
    path = open_folder / "pager.toml"
    path.write_text(_config(open_folder, 'allow_users = ["nobody"]'))
    config = load(path)
    with trio.fail_after(30):
        async with running(config, offload=None):
            config.socket.chmod(0o666)
            result = await trio.run_process(
                ["/usr/bin/python3", "-c", RELOAD_CLIENT, str(config.socket)],
                user="nobody",
                group="nogroup",
                extra_groups=[],
                capture_stdout=True,
            )
    reload, ping = map(json.loads, result.stdout.decode().splitlines())
    assert reload["error"]["code"] == "forbidden"
    assert ping["pong"] is True  # the connection stays open: only that request is refused


async def test_a_failing_user_lookup_refuses_one_connection_not_the_daemon(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pagerd.front import server

    def failing(peer: object, with_groups: bool) -> object:
        raise OSError("the directory service does not answer")

    path = tmp_path / "pager.toml"
    path.write_text(_config(tmp_path, 'allow_users = ["nobody"]'))
    config = load(path)
    with trio.fail_after(60):
        async with running(config):
            monkeypatch.setattr(server, "resolve", failing)
            async with connect(config.socket) as conn:  # root: let in by its uid alone
                status = await conn.request("status", service="api")
            monkeypatch.undo()
            async with connect(config.socket) as conn:
                again = await conn.request("ping")
    assert status["state"] == "healthy" and again["pong"] is True
