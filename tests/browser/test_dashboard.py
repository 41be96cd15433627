"""The admin dashboard in a real browser: log in, see a submission and its Close lead, find a
person by email, replay a dead one; screenshots of the overview and the search are saved.

The receiver (with the admin token), a worker and the Close emulator run in-process; headless
Chromium drives the pages. A dead submission is made the way it happens in production: the
custom field the source maps to is deleted in Close after the worker started, so Close refuses
the lead; the field is put back, and the replay button delivers it. Skipped when Debian's
chromium is absent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from close_emulator import EmulatorState
from service.config.settings import Settings
from service.queue import Queue
from service.receiver.app import create_app
from tests.browser.cdp import CHROMIUM, Browser, Page, launch
from tests.conftest import (
    ADMIN_TOKEN,
    emulator_state,
    running_worker,
    tagged_sources,
    wait_for_record,
)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
"""Where every run saves the pictures docs/admin-api.md shows (copied to docs/images/)."""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@dataclass
class Stack:
    base: str
    receiver: TestServer
    browser: Browser
    close: EmulatorState


@pytest.fixture
async def stack(
    settings: Settings, redis: Redis, emulator: TestServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    sources = tagged_sources()
    receiver = TestServer(create_app(settings, sources, redis=redis), host="127.0.0.1")
    await receiver.start_server()
    try:
        async with (
            running_worker(settings, sources, redis),
            launch(tmp_path / "profile") as browser,
        ):
            base = str(receiver.make_url("")).rstrip("/")
            yield Stack(base, receiver, browser, emulator_state(emulator))
    finally:
        await receiver.close()


async def submit(stack: Stack, payload: dict[str, Any]) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base}/hooks/tagged", json=payload) as response,
    ):
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])


async def text_of(page: Page) -> str:
    return str(await page.evaluate("document.body.innerText"))


async def test_log_in_see_a_submission_and_replay_a_dead_one(stack: Stack, queue: Queue) -> None:
    created_id = await submit(stack, {"email": "ann@example.com"})
    created = await wait_for_record(queue, created_id, ("created",))
    fields = stack.close.options.lead_custom_fields
    stack.close.configure(lead_custom_fields=[])  # deleted in Close after the worker started
    dead_id = await submit(stack, {"email": "bo@example.com"})
    await wait_for_record(queue, dead_id, ("dead",))

    page = await stack.browser.new_page()
    await page.goto(f"{stack.base}/admin")
    assert "Admin token" in await text_of(page)
    # A wrong token: the form again, with an error.
    await page.evaluate(
        "document.querySelector('input[name=token]').value = 'not-the-token';"
        "document.querySelector('form button').click()"
    )
    await page.wait_until("document.querySelector('.error') !== null")
    assert "not an admin token" in await text_of(page)

    await page.evaluate(
        f"document.querySelector('input[name=token]').value = {json.dumps(ADMIN_TOKEN)};"
        "document.querySelector('form button').click()"
    )
    await page.wait_until(f"document.querySelector('tr[data-id=\"{created_id}\"]') !== null")
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    row = f"document.querySelector('tr[data-id=\"{created_id}\"]')"
    assert "created" in await page.evaluate(f"{row}.innerText")
    link = await page.evaluate(f"{row}.querySelector('a.lead').href")
    assert link == f"https://app.close.com/lead/{created.lead_id}/"
    assert await page.evaluate("document.querySelector('[data-state=dead]').innerText") == "1"
    overview = await text_of(page)
    assert "ann@example.com" not in overview  # personal data only on a submission's own page

    # "Did ann@example.com's request reach Close?": the search box finds her submission.
    await page.evaluate(
        "document.querySelector('input[name=q]').value = 'Ann@Example.com';"
        "document.querySelector('form[role=search] button').click()"
    )
    await page.wait_until("location.pathname === '/admin/search'")
    await page.wait_until(f"document.querySelector('tr[data-id=\"{created_id}\"]') !== null")
    found = await text_of(page)
    assert "1 submission found." in found and "created" in found
    assert dead_id not in found  # bo's submission is another person's
    await page.screenshot(SCREENSHOTS / "dashboard-search.png")
    await page.goto(f"{stack.base}/admin")
    await page.wait_until("document.querySelector('#chart-states svg') !== null")
    await page.screenshot(SCREENSHOTS / "dashboard.png")

    # The submission's own page shows what was submitted.
    await page.evaluate(f"{row}.querySelector('a.sub').click()")
    await page.wait_until(f"location.pathname === '/admin/submissions/{created_id}'")
    await page.wait_until("document.body.innerText.includes('ann@example.com')")

    # The dead letter: Close knows the field again; replay it from the dead letters page.
    stack.close.configure(lead_custom_fields=fields)
    await page.goto(f"{stack.base}/admin/dead")
    dead_row = f"document.querySelector('tr[data-id=\"{dead_id}\"]')"
    assert "HTTP 400" in await page.evaluate(f"{dead_row}.innerText")
    await page.evaluate(f"{dead_row}.querySelector('button.replay').click()")
    await page.wait_until("document.body.innerText.includes('1 queued again.')")
    replayed = await wait_for_record(queue, dead_id, ("created",))
    assert len(stack.close.leads_with_email("bo@example.com")) == 1
    assert replayed.lead_id and replayed.replayed_at

    await page.goto(f"{stack.base}/admin")
    await page.wait_until("document.querySelector('[data-state=dead]').innerText === '0'")
    # Logging out ends the session: the login form again.
    await page.evaluate("document.querySelector('form[action=\"/admin/logout\"] button').click()")
    await page.wait_until("document.querySelector('input[name=token]') !== null")
