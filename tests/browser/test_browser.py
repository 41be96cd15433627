"""A real browser: headless Chromium posts forms and fetch() requests from a page on another
origin to the receiver, a worker turns them into leads in the Close emulator.

Pages come from one local server (the site, listed in the source's CORS origins) and a second
one on another port (a site that is not listed). Skipped when Debian's chromium is absent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.keys import Keys
from service.queue import Queue
from service.queue.records import Record
from service.receiver.app import create_app
from tests.browser.cdp import CHROMIUM, Browser, launch
from tests.conftest import emulator_state, running_worker, sources_from, wait_for_record

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]

FORM_PAGE = """<!doctype html><html><head><title>Contact</title></head><body>
<form method="post" action="{hook}" enctype="{enctype}">
  <input name="name" value="{name}"><input name="email" value="{email}">
  <textarea name="message">Hello from a real browser</textarea>
  <input name="fax" value="" style="display:none" tabindex="-1" autocomplete="off">
  {extra}
  <button type="submit">Send</button>
</form></body></html>"""

FETCH_PAGE = """<!doctype html><html><head><title>Fetch</title><script>
async function send(url, payload) {
  try {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify(payload)});
    return {status: r.status, body: await r.json()};
  } catch (e) { return {error: String(e)}; }
}
</script></head><body>fetch</body></html>"""


@dataclass
class Site:
    """The receiver, the site's page server, a second (unlisted) origin, what reached the
    receiver, and the browser."""

    hook: str
    site: str
    other: str
    browser: Browser
    seen: list[tuple[str, str, int]] = field(default_factory=list)


def page_server(where: dict[str, str]) -> web.Application:
    """The site's pages; ``where["hook"]`` is the receiver's URL (known once it listens)."""

    async def form(request: web.Request) -> web.Response:
        multipart = request.query.get("multipart") == "1"
        html = FORM_PAGE.format(
            hook=where["hook"],
            enctype="multipart/form-data" if multipart else "application/x-www-form-urlencoded",
            name=request.query.get("name", ""),
            email=request.query.get("email", ""),
            extra='<input type="file" name="cv">' if multipart else "",
        )
        return web.Response(text=html, content_type="text/html")

    async def page(request: web.Request) -> web.Response:
        text = FETCH_PAGE if request.match_info["page"] == "fetch" else request.match_info["page"]
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/form", form)
    app.router.add_get("/{page}", page)
    return app


@pytest.fixture
async def site(
    settings: Settings, redis: Redis, emulator: TestServer, tmp_path: Path
) -> AsyncIterator[Site]:
    where: dict[str, str] = {}
    pages = TestServer(page_server(where), host="127.0.0.1")
    other = TestServer(page_server(where), host="127.0.0.1")
    await pages.start_server()
    await other.start_server()
    origin = f"http://localhost:{pages.port}"
    sources = sources_from(
        {
            "sources": {
                "site": {
                    "kind": "form",
                    "preset": "generic-form",
                    "cors": {"origins": [origin]},
                    "redirect": {"success_url": f"{origin}/thanks", "error_url": f"{origin}/oops"},
                    "honeypot": "fax",
                }
            }
        }
    )
    app = create_app(settings, sources, redis=redis)
    seen: list[tuple[str, str, int]] = []

    async def log(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((request.method, request.headers.get("Origin", ""), response.status))

    app.on_response_prepare.append(log)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    where["hook"] = str(receiver.make_url("/hooks/site"))
    try:
        async with (
            running_worker(settings, sources, redis),
            launch(tmp_path / "profile") as browser,
        ):
            yield Site(where["hook"], origin, f"http://localhost:{other.port}", browser, seen)
    finally:
        await receiver.close()
        await pages.close()
        await other.close()


async def record_of(queue: Queue, redis: Redis, keys: Keys, email: str) -> Record:
    async for key in redis.scan_iter(match=keys.sub("*")):
        record = await queue.records.get(key.rsplit(":", 1)[1])
        if record and json.loads(record.envelope or "{}").get("body", {}).get("email") == email:
            return record
    raise AssertionError(f"no submission from {email}")


async def test_html_forms_are_posted_redirected_and_become_leads(
    site: Site, emulator: TestServer, queue: Queue, redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    page = await site.browser.new_page()
    # A plain urlencoded form: the browser follows the 303 to the thank-you page.
    await page.goto(f"{site.site}/form?name=Ann+Lee&email=ann@example.com")
    await page.evaluate("document.querySelector('button').click()")
    await page.wait_until(f"location.href === '{site.site}/thanks'")
    # A multipart form with a file attached: fields kept, the file dropped, same redirect.
    cv = tmp_path / "cv.pdf"
    cv.write_bytes(b"%PDF-1.4 not stored\n")
    await page.goto(f"{site.site}/form?multipart=1&name=Bo+Yu&email=bo@example.com")
    await page.set_file("input[type=file]", cv)
    await page.evaluate("document.querySelector('button').click()")
    await page.wait_until(f"location.href === '{site.site}/thanks'")
    # A form that can never become a lead (no name, no email): sent to the error page.
    await page.goto(f"{site.site}/form")
    await page.evaluate("document.querySelector('button').click()")
    await page.wait_until(f"location.href === '{site.site}/oops?error=unprocessable'")

    for email in ("ann@example.com", "bo@example.com"):
        record = await record_of(queue, redis, keys, email)
        record = await wait_for_record(queue, record.id, ("created",))
        assert len(emulator_state(emulator).leads_with_email(email)) == 1
    bo = json.loads((await record_of(queue, redis, keys, "bo@example.com")).envelope or "")
    assert bo["body"]["_files_dropped"] == ["cv"] and bo["body"]["name"] == "Bo Yu"
    assert "fax" not in bo["body"]  # the empty honeypot is not kept
    assert [status for method, _, status in site.seen if method == "POST"] == [303, 303, 303]


async def test_fetch_json_passes_the_preflight_only_from_the_listed_origin(
    site: Site, emulator: TestServer, queue: Queue
) -> None:
    page = await site.browser.new_page()
    await page.goto(f"{site.site}/fetch")
    payload = {"name": "Cy Dee", "email": "cy@example.com", "company": "Acme"}
    answer = await page.evaluate(f"send({site.hook!r}, {json.dumps(payload)})")
    assert answer["status"] == 202 and answer["body"]["status"] == "queued", answer
    record = await wait_for_record(queue, answer["body"]["id"], ("created",))
    lead = emulator_state(emulator).leads_with_email("cy@example.com")
    assert record.lead_id == lead[0]["id"]
    assert site.seen[:2] == [("OPTIONS", site.site, 204), ("POST", site.site, 202)]

    await page.goto(f"{site.other}/fetch")
    refused = await page.evaluate(f"send({site.hook!r}, {json.dumps(payload)})")
    assert "Failed to fetch" in refused.get("error", ""), refused
    from_other = [(method, status) for method, origin, status in site.seen if origin == site.other]
    assert from_other == [("OPTIONS", 403)]  # the browser never sent the POST
