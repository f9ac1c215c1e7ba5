"""Acknowledge links on the real clock, end to end: the real `pagerd` process, its email sent
to an SMTP server on loopback (by pagerd itself or by a delivery worker), the links in it
opened and posted over HTTP, before and after a restart of the daemon.

A page shows its times on the wall clock (pagerd's own frame plus the wall clock's offset),
while a link names its incident by the time it opened as stored, in pagerd's frame: on the
real clock the two differ (by a float's rounding at least, by a step after one), so only a
real clock shows whether the link names the incident pagerd holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import httpx
import pytest

from tests.processes import Pagerd, pager, wait_for
from tests.servers import SmtpServer, free_port

pytestmark = pytest.mark.e2e

CONFIG: Final = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"
{delivery}
[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}/"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
port = {smtp}
sender = "pager@example.com"
security = "none"
timeout = "5s"

[policies.oncall]
[[policies.oncall.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "1h"

[services.api]
policy = "oncall"
"""


def body_of(smtp: SmtpServer) -> str:
    payload = smtp.received[0].message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def words(response: httpx.Response) -> str:
    """The page's words, without its style sheet and markup."""
    text = re.sub(r"<style>.*?</style>", " ", response.text, flags=re.DOTALL)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


@pytest.mark.parametrize("workers", [None, 0], ids=["delivery-workers", "workers-0"])
def test_the_links_of_a_mailed_page_answer_it_before_and_after_a_restart(
    tmp_path: Path, workers: int | None
) -> None:
    port = free_port()
    delivery = "" if workers is None else f"[delivery]\nworkers = {workers}\n"
    with SmtpServer() as smtp:
        config = CONFIG.format(delivery=delivery, port=port, smtp=smtp.port)
        (tmp_path / "pager.toml").write_text(config)
        daemon = Pagerd(tmp_path / "pager.toml", tmp_path / "run" / "pager.sock", tmp_path / "err")
        daemon.start()
        try:
            assert pager(daemon.socket, "alert", "api", "checkout down").returncode == 0
            smtp.wait_for(1, within=20)
            found = dict(
                re.findall(rf"http://127\.0\.0\.1:{port}/(ack|resolve)/(\S+)", body_of(smtp))
            )
            assert found.keys() == {"ack", "resolve"}, body_of(smtp)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                shown = client.get(f"/ack/{found['ack']}")
                assert shown.status_code == 200, words(shown)
                assert "Acknowledge api#1?" in words(shown) and "<form" in shown.text
                done = client.post("/ack", data={"token": found["ack"]})
                assert done.status_code == 200, words(done)
                assert "api#1 is acknowledged, by email:alice@example.com" in words(done)
            history = pager(daemon.socket, "history", "api").stdout
            assert "acknowledged by email:alice@example.com via link" in history, history

            assert daemon.terminate() == 0
            daemon.start()  # a new frame, anchored to the wall clock again

            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                shown = client.get(f"/resolve/{found['resolve']}")
                assert shown.status_code == 200, words(shown)
                assert "Resolve api#1?" in words(shown)
                again = client.post("/ack", data={"token": found["ack"]})
                assert again.status_code == 409, words(again)  # acknowledged already: said so
                closed = client.post("/resolve", data={"token": found["resolve"]})
                assert closed.status_code == 200, words(closed)
                assert "api#1 is closed, by email:alice@example.com" in words(closed)
            wait_for(
                lambda: "healthy" in pager(daemon.socket, "status", "api").stdout,
                10,
                "api healthy",
            )
            assert daemon.terminate() == 0
        finally:
            daemon.stop()
