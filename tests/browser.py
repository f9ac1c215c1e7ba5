"""Debian's Chromium, driven by Playwright, beside a daemon running on Trio in the same process.

Playwright's synchronous API belongs to the thread that started it, and blocks: so it lives in
one thread of its own, and the Trio side hands it each step (`await browser.run(fn)`), served
by the daemon meanwhile. Every step is bounded by Playwright's own timeouts (`STEP_TIMEOUT`),
on the real clock, whatever the Trio clock does. No browser is ever downloaded: Chromium is the
system's (`scripts/install-test-tools` installs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeVar

import trio
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import Playwright, sync_playwright

CHROMIUM: Final = Path("/usr/bin/chromium")
STEP_TIMEOUT: Final = 15_000
"""Milliseconds any one step (a click, a wait for an element) may take."""
MISSING: Final = (
    f"NO BROWSER: {CHROMIUM} is missing, so the web console's browser tests did NOT run "
    "(scripts/install-test-tools installs Debian's chromium)"
)

T = TypeVar("T")


class Browser:
    """One Chromium, in its own thread."""

    def __init__(self, executor: ThreadPoolExecutor, browser: PlaywrightBrowser) -> None:
        self._executor = executor
        self.browser = browser

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the browser's thread, from any other thread, and give its result."""
        return self._executor.submit(fn).result()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the browser's thread while Trio goes on serving."""
        return await trio.to_thread.run_sync(self.call, fn)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium, launched headless from `CHROMIUM`, closed on exit."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
    try:
        playwright: Playwright = executor.submit(lambda: sync_playwright().start()).result()
        try:
            launched = executor.submit(
                lambda: playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, timeout=60_000
                )
            ).result()
            try:
                yield Browser(executor, launched)
            finally:
                executor.submit(launched.close).result()
        finally:
            executor.submit(playwright.stop).result()
    finally:
        executor.shutdown(wait=True)
