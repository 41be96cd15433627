"""Form post / webhook → Redis Stream → worker → a lead in the Close emulator."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.config.sources import Sources
from service.keys import GROUP, Keys
from service.queue import Queue
from service.receiver.app import create_app
from tests.conftest import (
    emulator_state,
    lead_posts,
    running_worker,
    tagged_sources,
    wait_for_record,
)


async def post_form(client: TestClient[Any, Any], body: str, source: str = "website") -> str:
    response = await client.post(
        f"/hooks/{source}",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def test_form_post_becomes_a_lead(
    client: TestClient[Any, Any],
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    keys: Keys,
    emulator: TestServer,
) -> None:
    sub_id = await post_form(
        client, "name=Ann+Lee&email=Ann%40Example.com&phone=%28415%29+555-0100&company=Acme+Inc"
    )
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id)
    state = emulator_state(emulator)
    assert record.lead_id in state.leads
    lead = state.leads[record.lead_id or ""]
    assert lead["name"] == "Acme Inc"
    [contact] = lead["contacts"]
    assert contact["name"] == "Ann Lee"
    assert [e["email"] for e in contact["emails"]] == ["ann@example.com"]
    assert [p["phone"] for p in contact["phones"]] == ["+14155550100"]
    assert record.attempts == 1
    assert record.history[0]["state"] == "queued"
    assert record.history[-1]["state"] == "created"
    assert await redis.xlen(keys.stream) == 0
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0
    notes = state.notes_for(record.lead_id or "")
    assert len(notes) == 1
    assert "email: Ann@Example.com" in notes[0]["note"]  # the note keeps what was sent


async def test_json_webhook_becomes_a_lead(
    client: TestClient[Any, Any],
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    emulator: TestServer,
) -> None:
    payload = {
        "id": "ref-991",
        "contact": {
            "name": "Bo Smith",
            "email": "bo@globex.example",
            "job_title": "CTO",
            "phone": "+44 20 7946 0958",
        },
        "company": {"name": "Globex", "domain": "https://globex.example"},
        "notes": "Wants a demo",
    }
    response = await client.post("/hooks/partner", json=payload)
    sub_id = (await response.json())["id"]
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id)
    lead = emulator_state(emulator).leads[record.lead_id or ""]
    assert lead["name"] == "Globex"
    assert lead["url"] == "https://globex.example"
    assert lead["description"] == "Wants a demo"
    [contact] = lead["contacts"]
    assert (contact["name"], contact["title"]) == ("Bo Smith", "CTO")
    assert [p["phone"] for p in contact["phones"]] == ["+442079460958"]


async def test_entry_of_a_dead_consumer_is_reclaimed_and_processed_once(
    client: TestClient[Any, Any],
    queue: Queue,
    make_settings: Any,
    sources: Sources,
    redis: Redis,
    keys: Keys,
    emulator: TestServer,
) -> None:
    sub_id = await post_form(client, "name=Cy+Dee&email=cy%40example.com")
    # A consumer takes the entry and dies without finishing it.
    [taken] = await queue.stream.read("crashed-consumer", 10, 100)
    assert taken.sub_id == sub_id
    settings = make_settings(visibility_timeout_seconds=1.0)
    async with running_worker(settings, sources, redis, consumer="rescuer") as worker:
        record = await wait_for_record(queue, sub_id)
        await asyncio.sleep(1.5)  # a second visibility timeout passes: nothing is claimed again
    assert worker.processed == 1
    assert record.attempts == 1
    assert len(emulator_state(emulator).leads_with_email("cy@example.com")) == 1
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_close_400_ends_dead_with_field_errors(
    queue: Queue, settings: Settings, redis: Redis, keys: Keys, emulator: TestServer
) -> None:
    sources = tagged_sources()
    state = emulator_state(emulator)
    async with running_worker(settings, sources, redis):
        # The field is deleted in Close after the worker read the schema: Close answers 400.
        state.configure(lead_custom_fields=[])
        async with TestClient(TestServer(create_app(settings, sources, redis=redis))) as client:
            response = await client.post("/hooks/tagged", json={"email": "d@example.com"})
            sub_id = (await response.json())["id"]
        record = await wait_for_record(queue, sub_id, ("dead",))
    assert record.attempts == 1
    assert record.close_response["field-errors"]
    assert record.last_error["status"] == 400
    assert any("does not exist" in line for line in record.last_error["field_errors"])
    assert state.leads == {}
    dead = await redis.xrange(keys.dead)
    assert [fields["sub"] for _, fields in dead] == [sub_id]


async def test_close_503_then_success_is_created_after_retry(
    client: TestClient[Any, Any],
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    emulator: TestServer,
) -> None:
    state = emulator_state(emulator)
    state.add_fault(method="POST", path="/api/v1/lead/", status=503, count=1)
    sub_id = await post_form(client, "name=Di+Eve&email=di%40example.com")
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id)
    # The 503 left the outcome unknown: the next attempts look the person up, wait out the
    # search-index grace, and only then create.
    assert record.attempts >= 2
    states = [e["state"] for e in record.history]
    assert "retrying" in states and states[-1] == "created"
    assert len(state.leads_with_email("di@example.com")) == 1
    assert [r.status for r in lead_posts(state)] == [503, 200]


async def test_note_failure_does_not_create_the_lead_twice(
    client: TestClient[Any, Any],
    queue: Queue,
    settings: Settings,
    sources: Sources,
    redis: Redis,
    emulator: TestServer,
) -> None:
    state = emulator_state(emulator)
    state.add_fault(method="POST", path="/api/v1/activity/note/", status=502, count=1)
    sub_id = await post_form(client, "name=Ed+Fox&email=ed%40example.com")
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id)
    assert record.attempts == 2
    assert len(state.leads_with_email("ed@example.com")) == 1
    assert len(state.notes_for(record.lead_id or "")) == 1


async def test_an_entry_that_never_reaches_an_outcome_is_dead_lettered(
    client: TestClient[Any, Any],
    queue: Queue,
    make_settings: Any,
    sources: Sources,
    redis: Redis,
    keys: Keys,
    emulator: TestServer,
) -> None:
    sub_id = await post_form(client, "name=Lo+Op&email=loop%40example.com")
    # Consumers took it again and again and died every time (a crash loop).
    await queue.stream.read("crashing-0", 1, 100)
    for n in range(1, 11):
        await queue.stream.autoclaim(f"crashing-{n}", min_idle_ms=0, count=1)
    settings = make_settings(visibility_timeout_seconds=1.0)
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id, ("dead",))
    assert "without an outcome" in record.history[-1]["detail"]["reason"]
    assert [f["sub"] for _, f in await redis.xrange(keys.dead)] == [sub_id]
    assert emulator_state(emulator).leads == {}
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0
