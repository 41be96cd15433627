"""`lead-intake dev` with the shipped config/sources.yaml: local defaults that stay local.

A browser posting the website form lands on the service's own thank-you page (the file's
redirect pages are on www.example.com); the lead links of the admin API point at the
emulator's lead page; with INTAKE_ADMIN_TOKEN set the banner names /admin and never prints the
token; the receiver's and the emulator's access logs have their own logger names.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from service.dev.redis_server import free_port
from service.dev.thanks import local_redirects
from tests.conftest import ROOT, sources_from
from tests.dev.processes import clean_env, read_until, start, stop

TOKEN = "a-token-the-user-chose"


@dataclass
class Dev:
    receiver: str
    emulator: str
    banner: str
    process: asyncio.subprocess.Process
    log: list[str]


async def _drain(process: asyncio.subprocess.Process, log: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:
        log.append(line.decode())


@pytest.fixture
async def dev() -> AsyncIterator[Dev]:
    receiver, emulator = free_port(), free_port()
    env = clean_env(
        INTAKE_PORT=str(receiver),
        INTAKE_EMULATOR_PORT=str(emulator),
        INTAKE_HOST="127.0.0.1",
        INTAKE_ADMIN_TOKEN=TOKEN,
    )
    process = await start(sys.executable, "-m", "service.cli", "dev", cwd=ROOT, env=env)
    log: list[str] = []
    await read_until(process, "Admin:", log, within=30)
    banner = "".join(log)
    drain = asyncio.create_task(_drain(process, log))
    try:
        yield Dev(
            f"http://127.0.0.1:{receiver}", f"http://127.0.0.1:{emulator}", banner, process, log
        )
    finally:
        await stop(process)
        await drain


async def _record(http: aiohttp.ClientSession, dev: Dev, sub_id: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with http.get(f"{dev.receiver}/v1/submissions/{sub_id}", headers=headers) as got:
            record = dict(await got.json())
        if record["state"] == "created":
            return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"{sub_id} not created: {record}")


async def test_dev_keeps_redirects_and_lead_links_local(dev: Dev) -> None:
    assert f"Admin:    {dev.receiver}/admin (log in with INTAKE_ADMIN_TOKEN)" in dev.banner
    assert TOKEN not in dev.banner and "$INTAKE_ADMIN_TOKEN" not in dev.banner
    assert f"land on {dev.receiver}/thanks" in dev.banner
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{dev.receiver}/hooks/website",
            data={"name": "Ann Lee", "email": "ann@example.com"},
            headers={"Accept": "text/html", "Origin": "http://localhost:3000"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303, await answer.text()
            location = answer.headers["Location"]
        assert location == f"{dev.receiver}/thanks"
        async with http.get(location) as page:
            assert page.status == 200 and "Thank you" in await page.text()
        async with http.get(f"{dev.receiver}/thanks/problem?error=rate-limited") as page:
            assert "rate-limited" in await page.text()
        # The lead link the admin API gives is the emulator's page of that lead.
        async with http.post(
            f"{dev.receiver}/hooks/website", json={"email": "bo@example.com"}
        ) as posted:
            sub_id = (await posted.json())["id"]
        record = await _record(http, dev, sub_id)
        assert record["lead_url"] == f"{dev.emulator}/lead/{record['lead_id']}/"
        async with http.get(str(record["lead_url"])) as page:
            assert page.status == 200 and "bo@example.com" in await page.text()
    await asyncio.sleep(0.3)
    loggers = " ".join(dev.log)
    assert "lead_intake.access: POST /hooks/website" in loggers
    assert "close_emulator.access: POST /api/v1/lead/" in loggers


def test_only_pages_off_this_machine_are_replaced() -> None:
    sources = sources_from(
        {
            "sources": {
                "site": {
                    "kind": "form",
                    "preset": "generic-form",
                    "redirect": {
                        "success_url": "http://localhost:3000/thanks",
                        "error_url": "https://www.example.com/oops",
                        "allow": ["http://localhost:3000/done/*", "https://www.example.com/x"],
                    },
                },
                "plain": {"kind": "webhook", "preset": "generic-json"},
            }
        }
    )
    local, changed = local_redirects(sources, "http://127.0.0.1:8080")
    assert changed == ["site"]
    redirect = local.get("site").redirect  # type: ignore[union-attr]
    assert redirect is not None
    assert redirect.success_url == "http://localhost:3000/thanks"  # a site under development
    assert redirect.error_url == "http://127.0.0.1:8080/thanks/problem"
    assert redirect.allow == ("http://localhost:3000/done/*",)
    assert local.get("plain") == sources.get("plain")
