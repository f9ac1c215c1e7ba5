"""Screenshots of the web console for the docs (docs/images/console-*.png), taken in Debian's
Chromium from a real daemon with a few incidents open:

    .venv/bin/python -m tests.console_screenshots --out docs/images

The daemon runs in this process on a mock clock that stands still, so every shot shows the same
times whatever the day (or the speed) it is taken: shots taken again differ only where the
console did.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing
from playwright.sync_api import expect

from tests.browser import CHROMIUM, MISSING, STEP_TIMEOUT, Browser, chromium
from tests.console import PASSWORDS, console_config
from tests.harness import connect, running
from tests.http import base_url

SHOTS = {
    "console-desktop.png": ("/console/", 1280, 860),
    "console-incident.png": ("/console/incidents/api/1", 1280, 860),
    "console-phone.png": ("/console/", 390, 844),
}


async def _take(out: Path, browser: Browser, folder: Path) -> None:
    config = console_config(folder)
    async with running(config) as daemon:  # bounded by Playwright's timeouts, in real time
        async with connect(config.socket) as conn:
            await conn.request("alert", service="api", message="p99 latency over 2 s on checkout")
            await conn.request("alert", service="web", message="5xx rate at 12% (db-2 down)")
            await conn.request("ack", service="web", by="bob")
        url = base_url(daemon)

        def shoot() -> None:
            for name, (path, width, height) in SHOTS.items():
                context = browser.browser.new_context(
                    viewport={"width": width, "height": height}, color_scheme="light"
                )
                context.set_default_timeout(STEP_TIMEOUT)
                page = context.new_page()
                page.goto(url + "/console/sign-in")
                page.fill("#username", "alice")
                page.fill("#password", PASSWORDS["alice"])
                page.click("#sign-in")
                page.goto(url + path)
                expect(page.locator('[data-incident="api#1"]')).to_be_visible()
                page.screenshot(path=str(out / name), full_page=True)
                context.close()

        await browser.run(shoot)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the web console for the docs.")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="the folder")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(MISSING, file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser, tempfile.TemporaryDirectory(prefix="pagerd-shots-") as folder:
        clock = trio.testing.MockClock(rate=0.0)  # nothing here waits on the daemon's clock
        trio.run(_take, args.out.resolve(), browser, Path(folder), clock=clock)
    for name in SHOTS:
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
