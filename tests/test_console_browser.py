"""The web console in a real browser: Debian's Chromium, driven by Playwright, against the real
daemon (in this process, over real TCP on 127.0.0.1).

The Trio clock is a `MockClock` running at the real rate: the page's script polls on the real
clock, and the test jumps the daemon's clock past an escalation deadline when it wants to see
one (and only then). Every browser step waits for its element or text (Playwright's waits,
bounded by `STEP_TIMEOUT`), never for a time. One browser for the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing
from playwright.sync_api import Page, expect

from pagerd import app
from tests.browser import CHROMIUM, MISSING, STEP_TIMEOUT, Browser, chromium
from tests.console import PASSWORDS, console_config
from tests.harness import connect, running, settle, steps
from tests.http import base_url

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=MISSING)

LATER: Final = 3600.0
"""How far the daemon's clock is moved after the ack: past every level's ack_timeout."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


async def new_page(browser: Browser, width: int = 1280, height: int = 800) -> Page:
    def make() -> Page:
        context = browser.browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(STEP_TIMEOUT)
        return context.new_page()

    return await browser.run(make)


async def close(browser: Browser, page: Page) -> None:
    await browser.run(page.context.close)


async def sign_in(browser: Browser, page: Page, url: str, user: str) -> None:
    def steps_() -> None:
        page.goto(url + "/console/")
        expect(page).to_have_url(url + "/console/sign-in")
        page.fill("#username", user)
        page.fill("#password", PASSWORDS[user])
        page.click("#sign-in")
        expect(page).to_have_url(url + "/console/")

    await browser.run(steps_)


async def alert(daemon: app.Daemon, message: str) -> None:
    async with connect(daemon.config.socket) as conn:
        assert (await conn.request("alert", service="api", message=message))["ok"]


async def test_an_alert_appears_by_itself_and_a_click_stops_escalation(
    mock_clock: trio.testing.MockClock, tmp_path: Path, browser: Browser
) -> None:
    mock_clock.rate = 1.0
    config = console_config(tmp_path, console='refresh = "1s"\n')
    # The jump is mock time; the bound on what the test may take in real time is the 120 s.
    with trio.fail_after(LATER + 120):
        async with running(config) as daemon:
            url = base_url(daemon)
            page = await new_page(browser)
            await sign_in(browser, page, url, "alice")
            await browser.run(lambda: expect(page.locator("#all-quiet")).to_be_visible())
            await alert(daemon, "checkout <b>down</b>")
            card = page.locator('[data-incident="api#1"]')
            # No reload: the page's own poll brings the incident in.
            await browser.run(lambda: expect(card).to_contain_text("checkout <b>down</b>"))
            await browser.run(lambda: expect(card).to_contain_text("email:alice@example.com"))
            await browser.run(lambda: card.locator("button.ack").click())
            notice = page.locator("#notice")
            await browser.run(lambda: expect(notice).to_have_text(
                "Acknowledged api#1: escalation stopped."))  # fmt: skip
            await browser.run(lambda: expect(page.locator(".acked-by")).to_contain_text("alice"))
            mock_clock.jump(LATER)  # level 1's ack_timeout (5m) long past
            await settle()
            assert {level for _, _, level, _ in steps(config)} == {1}  # level 2 never paged
            timeline = page.locator(".timeline")
            await browser.run(lambda: expect(timeline).to_contain_text("alice via console"))
            await close(browser, page)


async def test_a_console_page_is_not_reachable_signed_out(
    mock_clock: trio.testing.MockClock, tmp_path: Path, browser: Browser
) -> None:
    mock_clock.rate = 1.0
    with trio.fail_after(120):
        async with running(console_config(tmp_path)) as daemon:
            url = base_url(daemon)
            await alert(daemon, "disk full")
            page = await new_page(browser)

            def visit() -> None:
                for path in ("/console/", "/console/incidents/api/1"):
                    page.goto(url + path)
                    expect(page).to_have_url(url + "/console/sign-in")
                    expect(page.locator("#sign-in")).to_be_visible()
                answer = page.request.post(url + "/console/incidents/api/1/ack", form={"csrf": "x"})
                assert answer.status == 401

            await browser.run(visit)
            await close(browser, page)
            async with connect(daemon.config.socket) as conn:
                assert (await conn.request("status", service="api"))["incident"][
                    "acknowledged"
                ] is False


async def test_a_post_without_csrf_and_a_read_only_users_forged_post_are_refused(
    mock_clock: trio.testing.MockClock, tmp_path: Path, browser: Browser
) -> None:
    mock_clock.rate = 1.0
    with trio.fail_after(120):
        async with running(console_config(tmp_path)) as daemon:
            url = base_url(daemon)
            await alert(daemon, "disk full")
            ack = url + "/console/incidents/api/1/ack"
            alice = await new_page(browser)
            await sign_in(browser, alice, url, "alice")

            def without_token() -> None:
                assert alice.request.post(ack, form={}).status == 400
                assert alice.request.post(ack, form={"csrf": "0" * 32}).status == 403

            await browser.run(without_token)
            viewer = await new_page(browser, 390, 844)
            await sign_in(browser, viewer, url, "viewer")

            def forged() -> None:
                card = viewer.locator('[data-incident="api#1"]')
                expect(card).to_be_visible()
                expect(card.locator("button.ack")).to_have_count(0)
                expect(card.locator("button.resolve")).to_have_count(0)
                token = viewer.locator('input[name="csrf"]').first.input_value()
                answer = viewer.request.post(ack, form={"csrf": token})
                assert answer.status == 403 and "read-only" in answer.text()

            await browser.run(forged)
            await close(browser, alice)
            await close(browser, viewer)
            async with connect(daemon.config.socket) as conn:
                assert (await conn.request("status", service="api"))["incident"][
                    "acknowledged"
                ] is False
