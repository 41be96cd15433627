"""The dashboard answers "what happened to this person's lead?": search by email, phone,
submission id or lead id; the hourly chart; field names and reason codes in errors."""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.admin.activity import hourly_activity
from service.admin.views import error_code
from service.config.settings import Settings
from service.config.sources import Sources
from service.keys import Keys, identity_key
from service.queue import Queue, Record, Transition
from service.receiver.app import create_app
from tests.admin.test_admin import login
from tests.conftest import emulator_state, enqueue, running_worker, tagged_sources, wait_for_record

Client = TestClient[Any, Any]


async def logged_in(client: Client) -> None:
    assert (await login(client)).status == 303


def row_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', page)


async def search(client: Client, text: str) -> tuple[int, str]:
    response = await client.get("/admin/search", params={"q": text})
    return response.status, await response.text()


async def test_a_person_is_found_by_email_phone_and_lead_and_keys_hold_no_personal_data(
    client: Client, queue: Queue, settings: Settings, sources: Sources, redis: Redis, keys: Keys
) -> None:
    body = {
        "contact": {"name": "Jane Doe", "email": "Jane@Acme.example", "phone": "(415) 555-2671"}
    }
    async with running_worker(settings, sources, redis):
        first = await enqueue(queue, body)
        created = await wait_for_record(queue, first, ("created",))
        second = await enqueue(queue, {"contact": {"email": "jane@acme.example"}})
        await wait_for_record(queue, second, ("attached",))
        other = await enqueue(queue, {"contact": {"email": "someone@else.example"}})
        await wait_for_record(queue, other, ("created",))
    await logged_in(client)
    for text in ("jane@acme.example", " JANE@acme.EXAMPLE ", "+1 415 555 2671", "(415) 555-2671"):
        status, page = await search(client, text)
        assert status == 200, page
        wanted = [second, first] if "@" in text else [first]  # only the first had the phone
        assert row_ids(page) == wanted, text
    status, page = await search(client, str(created.lead_id))
    assert row_ids(page) == [second, first]
    assert f"/lead/{created.lead_id}/" in page  # the lead link of each row
    status, page = await search(client, other)
    assert row_ids(page) == [other]
    # The index's key names are hashes: no email or phone in any key.
    names = [name async for name in redis.scan_iter(match=f"{keys.tag}:*")]
    assert f"{keys.tag}:person:{identity_key('email', 'jane@acme.example')}" in names
    assert not [n for n in names if "acme" in n or "415" in n or "2671" in n]
    ttl = await redis.ttl(keys.person(identity_key("email", "jane@acme.example")))
    assert 0 < ttl <= settings.record_ttl_seconds


async def test_a_submission_no_worker_read_yet_is_found_by_scanning(
    client: Client, queue: Queue
) -> None:
    waiting = await enqueue(queue, {"contact": {"email": "new@person.example"}})
    await client.post("/hooks/partner", json={"contact": {"email": "other@person.example"}})
    await logged_in(client)
    status, page = await search(client, "new@person.example")
    assert status == 200 and row_ids(page) == [waiting]
    assert "queued" in page
    status, page = await search(client, "nobody@person.example")
    assert row_ids(page) == [] and "0 submissions found" in page


async def test_a_search_text_that_is_nothing_says_what_can_be_searched(client: Client) -> None:
    await logged_in(client)
    for text, says in (
        ("jane", "search by email, phone"),
        ("not-an@email", "is not an email address"),
        ("12345678901234567", "is not a phone number"),
    ):
        status, page = await search(client, text)
        assert status == 400 and says in page, text


async def test_dead_letters_name_custom_fields_not_their_ids(
    settings: Settings, redis: Redis, queue: Queue, client: Client, emulator: Any
) -> None:
    close = emulator_state(emulator)
    sources = tagged_sources()
    async with running_worker(settings, sources, redis):
        field_id = next(f.id for f in close.options.lead_custom_fields if f.name == "Lead Source")
        close.configure(lead_custom_fields=[])  # deleted in Close after the worker read it
        sub_id = await enqueue(queue, {"email": "dead@example.com"}, source="tagged")
        dead = await wait_for_record(queue, sub_id, ("dead",))
    assert field_id in str(dead.last_error)  # Close names the field by its id
    app = create_app(settings, sources, redis=redis)
    async with TestClient(TestServer(app)) as admin:
        await logged_in(admin)
        page = await (await admin.get("/admin/dead")).text()
    assert "The Custom Field &quot;Lead Source&quot; does not exist." in page
    assert field_id not in page


def _record(**fields: Any) -> Record:
    now = time.time()
    return Record(
        id="sub_x",
        source="s",
        state="rejected",
        received_at=now,
        updated_at=now,
        attempts=1,
        **fields,
    )


def test_the_reason_code_of_a_rejection_is_shown_when_present() -> None:
    coded = _record(
        history=(
            {"state": "rejected", "detail": {"reason": "no way to reach", "code": "no-contact"}},
        )
    )
    assert error_code(coded) == "no-contact"
    assert error_code(_record(last_error={"reason": "x", "code": "bad-phone"})) == "bad-phone"
    assert (
        error_code(
            _record(reason="spam", history=({"state": "rejected", "detail": {"reason": "spam"}},))
        )
        == "spam"
    )
    assert error_code(_record(history=({"state": "rejected", "detail": {"reason": "x"}},))) is None


async def test_the_hourly_chart_counts_by_state_and_source(client: Client, queue: Queue) -> None:
    now = time.time()
    ids = [await enqueue(queue, {"n": i}, source="partner") for i in range(3)]
    await enqueue(queue, {"n": 9}, source="website")
    await queue.steps.apply(Transition(ids[0], "dead", source="partner", dead=True))
    activity = await hourly_activity(queue, now + 1)
    assert activity.total == 4
    assert sum(activity.by_state["queued"]) == 3 and activity.by_state["dead"][-1] == 1
    assert {name: sum(c) for name, c in activity.by_source.items()} == {"partner": 3, "website": 1}
    await logged_in(client)
    page = await (await client.get("/admin")).text()
    assert '<svg class="chart"' in page and 'data-series="dead"' in page
    assert 'data-series="website"' in page and "<script" not in page
