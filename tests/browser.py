"""The console tests' browser: Debian's Chromium driven by Playwright, and screenshots on failure.

Playwright's own browser download cannot work on a closed network, so the tests
launch the system Chromium (`/usr/bin/chromium`, or CARELINE_CHROMIUM); `make
test` installs it and a CJK font with apt-get when missing. The flags keep
Chromium from calling outside hosts (see ../shared/notes/browser.md).

When a console test fails, every page it had open is saved as a PNG under
`test-output/console/` (the hook below records the outcome; the fixture's
teardown takes the pictures while the pages still exist).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from dispatch.service import Service
from dispatch.users import Role, create_user

CHROMIUM = os.environ.get("CARELINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output" / "console"
# The smallest screen the floor is built for.
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "correct horse battery staple"
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@dataclass
class Console:
    """The running service's console and a browser to use it with."""

    url: str
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)

    async def new_page(self) -> Page:
        """A page in a fresh browser context: its own cookies, so its own user."""
        context = await self.browser.new_context(viewport=VIEWPORT, locale="zh-CN")  # type: ignore[arg-type]
        self.contexts.append(context)
        return await context.new_page()

    async def logged_in(self, username: str, password: str = PASSWORD) -> Page:
        page = await self.new_page()
        await page.goto(self.url + "/console/login")
        await page.fill("#username", username)
        await page.fill("#password", password)
        await page.click("#login-submit")
        await page.wait_for_url(self.url + "/console/")
        return page

    async def screenshots(self, name: str) -> list[Path]:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        saved = []
        for c, context in enumerate(self.contexts):
            for p, page in enumerate(context.pages):
                path = OUTPUT / f"{name}-{c}-{p}.png"
                await page.screenshot(path=str(path), full_page=True)
                saved.append(path)
        return saved


async def add_user(pool: asyncpg.Pool, username: str, role: Role, display_name: str = "") -> None:
    async with pool.acquire() as conn:
        await create_user(conn, username, role, display_name=display_name or username, password=PASSWORD)


@pytest.fixture
async def console(service: Service, request: pytest.FixtureRequest) -> AsyncIterator[Console]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        running = Console(service.url, browser)
        try:
            yield running
        finally:
            if request.node.stash.get(FAILED, False):
                await running.screenshots(re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name))
            for context in running.contexts:
                await context.close()
            await browser.close()
