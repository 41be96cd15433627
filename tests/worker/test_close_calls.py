"""How many Close calls a lead costs, counted from the emulator's log: one search per new
person (email or phone in one query), none for a person the lead cache knows; and the
priority of an email match over a phone match, decided from the one answer."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from close_emulator.objects import create_lead
from service.config.settings import Settings
from service.config.sources import Sources
from service.keys import Keys
from service.queue import Queue, Record
from tests.conftest import emulator_state, enqueue, running_worker, sources_from, wait_for_record

N = 6
DONE = ("created", "attached", "skipped", "rejected", "dead")


def body(i: int, note: str = "hello", **contact: Any) -> dict[str, Any]:
    person = {"email": f"calls{i}@example.com", "name": f"Call {i}"}
    person["phone"] = f"+1 415 555 {3000 + i}"
    return {"contact": {**person, **contact}, "notes": note}


def calls(emulator: TestServer, since: int = 0) -> Counter[str]:
    """Close calls by the emulator's endpoint group, the worker's start-up reads left out."""
    state = emulator_state(emulator)
    return Counter(r.group for r in state.requests_since(since) if r.group != "read")


async def drain(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis, bodies: list[Any]
) -> list[Record]:
    ids = [await enqueue(queue, b) for b in bodies]
    async with running_worker(settings, sources, redis):
        return [await wait_for_record(queue, sub_id, DONE) for sub_id in ids]


async def test_a_new_person_costs_one_search_a_returning_one_none(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    settings: Settings = make_settings(worker_concurrency=4)
    state = emulator_state(emulator)
    first = await drain(queue, settings, sources, redis, [body(i) for i in range(N)])
    assert [r.state for r in first] == ["created"] * N
    assert calls(emulator) == Counter({"search": N, "lead_write": N, "activity_write": N})
    since = state.next_request_index
    again = await drain(queue, settings, sources, redis, [body(i, "again") for i in range(N)])
    assert [(r.state, r.progress.matched_via) for r in again] == [("attached", "cache")] * N
    assert [r.lead_id for r in again] == [r.lead_id for r in first]
    assert calls(emulator, since) == Counter({"activity_write": N})  # the note, nothing else


async def test_a_returning_person_the_cache_forgot_costs_one_search(
    queue: Queue,
    make_settings: Any,
    sources: Sources,
    redis: Redis,
    keys: Keys,
    emulator: TestServer,
) -> None:
    settings: Settings = make_settings(worker_concurrency=4)
    state = emulator_state(emulator)
    first = await drain(queue, settings, sources, redis, [body(i) for i in range(N)])
    await redis.delete(*[k async for k in redis.scan_iter(match=keys.lead("*"))])
    since = state.next_request_index
    again = await drain(queue, settings, sources, redis, [body(i, "again") for i in range(N)])
    assert [(r.state, r.progress.matched_via) for r in again] == [("attached", "search:email")] * N
    assert [r.lead_id for r in again] == [r.lead_id for r in first]
    assert calls(emulator, since) == Counter({"search": N, "activity_write": N})


def existing(state: Any, name: str, email: str, phone: str) -> str:
    contact = {"name": name, "emails": [{"email": email}], "phones": [{"phone": phone}]}
    return str(create_lead({"name": name, "contacts": [contact]}, state)["id"])


async def test_the_email_match_wins_over_a_newer_phone_match_in_one_search(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    own = existing(state, "Own", "Calls1@Example.com", "+14155550001")
    colleague = existing(state, "Desk", "desk@example.com", "+14155553001")  # newer
    [record] = await drain(queue, make_settings(), sources, redis, [body(1)])
    assert (record.state, record.lead_id) == ("attached", own)
    assert (record.progress.matched_via, record.progress.candidates) == ("search:email", (own,))
    assert calls(emulator) == Counter({"search": 1, "activity_write": 1})
    assert state.notes_for(colleague) == []


async def test_a_phone_match_is_used_when_no_lead_shows_the_email(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    desk = existing(state, "Desk", "desk@example.com", "+14155553002")
    [record] = await drain(queue, make_settings(), sources, redis, [body(2)])
    assert (record.state, record.lead_id, record.progress.matched_via) == (
        "attached",
        desk,
        "search:phone",
    )
    assert calls(emulator)["search"] == 1


async def test_a_full_page_of_phone_matches_does_not_hide_the_email_match(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    # The person's own lead is the oldest; 25 newer leads share their office switchboard.
    state = emulator_state(emulator)
    own = existing(state, "Own", "calls3@example.com", "+14155550003")
    for k in range(25):
        existing(state, f"Desk {k}", f"desk{k}@example.com", "+14155553003")
    [record] = await drain(queue, make_settings(), sources, redis, [body(3)])
    assert (record.lead_id, record.progress.matched_via) == (own, "search:email")
    assert calls(emulator) == Counter({"search": 2, "activity_write": 1})  # the page was full


async def test_the_contact_policy_reads_the_contacts_from_the_search_answer(
    queue: Queue, make_settings: Any, redis: Redis, emulator: TestServer
) -> None:
    # `on_match: contact`: whether the person already is a contact of the lead found is read
    # from the search's answer (its contacts came with it), without a GET of the lead.
    state = emulator_state(emulator)
    own = existing(state, "Own", "calls4@example.com", "+14155550004")
    desk = existing(state, "Desk", "desk@example.com", "+14155553005")
    extract = {"email": "body.contact.email", "full_name": "body.contact.name"}
    extract["phone"] = "body.contact.phone"
    sources = sources_from(
        {"sources": {"partner": {"kind": "webhook", "extract": extract, "default_region": "US",
                                 "dedup": {"on_match": "contact"}}}}
    )  # fmt: skip
    records = await drain(queue, make_settings(), sources, redis, [body(4), body(5)])
    assert [(r.state, r.lead_id, r.progress.matched_via) for r in records] == [
        ("attached", own, "search:email"),
        ("attached", desk, "search:phone"),
    ]
    assert [r.progress.steps["contact"].state for r in records] == ["skipped", "done"]
    assert sorted(c["name"] for c in state.leads[desk]["contacts"]) == ["Call 5", "Desk"]
    assert calls(emulator) == Counter({"search": 2, "lead_write": 1, "activity_write": 2})
    reads = [r.path for r in state.requests if r.method == "GET" and "/v1/lead/" in r.path]
    assert reads == []
