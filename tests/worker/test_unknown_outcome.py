"""A create whose answer was lost is resolved through Close's event log, so Close's search
index may lag far longer than the grace period without a second lead (service/worker/unknown.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.close import events as events_module
from service.config.sources import Sources
from service.queue import Queue
from service.queue.records import FINAL_STATES
from service.worker import unknown as unknown_module
from service.worker.unknown import OWN_LEAD_FOUND
from tests.conftest import (
    emulator_client,
    emulator_state,
    enqueue,
    lead_posts,
    running_worker,
    wait_for_record,
    wait_until,
)

LOST = {"method": "POST", "path": "/api/v1/lead/", "status": 502, "after_apply": True}


def steps(record: Any) -> list[str]:
    return [str((e.get("detail") or {}).get("step")) for e in record.history]


async def test_a_lost_create_answer_is_found_in_the_event_log_whatever_the_index_lag(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    state.configure(search_lag_seconds=600.0)  # far beyond the grace period
    state.add_fault(**LOST)
    email = "lost-in-index@example.com"
    sub_id = await enqueue(queue, {"contact": {"email": email, "name": "In Dex"}})
    settings = make_settings(unknown_outcome_grace_seconds=120.0, event_log_lag_seconds=0.5)
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=20)
    assert len(state.leads_with_email(email)) == 1
    assert len(lead_posts(state)) == 1
    assert record.state == "created"
    assert "lead found in the event log" in steps(record)
    assert record.lead_id in state.leads


async def test_nothing_in_the_event_log_creates_again_without_the_grace_period(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    state.configure(search_lag_seconds=600.0)
    state.add_fault(method="POST", path="/api/v1/lead/", status=504, count=1)  # not applied
    email = "never-made@example.com"
    sub_id = await enqueue(queue, {"contact": {"email": email}})
    settings = make_settings(unknown_outcome_grace_seconds=120.0, event_log_lag_seconds=0.5)
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=20)
    assert record.state == "created" and len(state.leads_with_email(email)) == 1
    assert len(lead_posts(state)) == 2  # the lost one (never applied) and the one that made it
    assert "lead found in the event log" not in steps(record)


async def test_an_unreadable_event_log_falls_back_to_the_grace_period(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    state.configure(search_lag_seconds=0.5, event_log_access="forbid")
    state.add_fault(**LOST)
    email = "no-event-log@example.com"
    sub_id = await enqueue(queue, {"contact": {"email": email}})
    settings = make_settings(unknown_outcome_grace_seconds=2.0, event_log_lag_seconds=0.2)
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=20)
    assert len(state.leads_with_email(email)) == 1 and len(lead_posts(state)) == 1
    # Found by the search once its index caught up, and told from a match: the service's own
    # user made it after the mark, and no other submission claims it.
    assert record.state == "created" and record.progress.lead_created
    assert OWN_LEAD_FOUND in steps(record)
    assert "lead found in the event log" not in steps(record)
    refused = [r for r in state.requests if r.path == "/api/v1/event/"]
    assert refused and {r.status for r in refused} == {403}


async def test_a_lead_someone_else_made_meanwhile_is_a_match_not_the_lost_create(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    # The create is refused before it applies (nothing made); meanwhile a rep adds the person
    # by hand. The retry's search finds that lead: attached to, not taken for its own.
    state = emulator_state(emulator)
    state.add_fault(method="POST", path="/api/v1/lead/", status=504, count=1)
    email = "made-by-a-rep@example.com"
    sub_id = await enqueue(queue, {"contact": {"email": email}})
    settings = make_settings(
        unknown_outcome_grace_seconds=1.0, event_log_lag_seconds=0.5, retry_base_seconds=0.5
    )
    async with running_worker(settings, sources, redis):
        await wait_until(lambda: len(lead_posts(state)) == 1)
        made = {"name": "Rep's lead", "contacts": [{"emails": [{"email": email}]}]}
        async with ClientSession() as http:
            close = emulator_client(http, emulator)
            rep_lead = str((await close.create_lead(made))["id"])
        state.leads[rep_lead]["created_by"] = "user_a_sales_rep"
        record = await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=20)
    assert record.state == "attached" and record.lead_id == rep_lead
    assert not record.progress.lead_created
    assert OWN_LEAD_FOUND not in steps(record)
    assert len(state.leads_with_email(email)) == 1


async def test_the_persons_other_submission_waits_for_the_unknown_create(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    state.configure(search_lag_seconds=600.0)
    state.add_fault(**LOST)
    email = "two-at-once@example.com"
    first = await enqueue(queue, {"contact": {"email": email, "name": "Two Atonce"}})
    second = await enqueue(queue, {"contact": {"email": email}, "notes": "again"})
    settings = make_settings(
        unknown_outcome_grace_seconds=120.0, event_log_lag_seconds=0.5, worker_concurrency=4
    )
    async with running_worker(settings, sources, redis):
        records = [
            await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=30)
            for sub_id in (first, second)
        ]
    assert len(state.leads_with_email(email)) == 1
    assert len(lead_posts(state)) == 1
    # The first submission's lead is the one lead; the second attaches to it (through the event
    # log or the cache, whichever comes first).
    assert {r.state for r in records} <= {"attached", "created"}
    assert "attached" in {r.state for r in records}
    assert len({r.lead_id for r in records}) == 1


async def test_the_event_log_is_read_only_around_the_lost_create_not_back_from_now(
    queue: Queue,
    make_settings: Any,
    sources: Sources,
    redis: Redis,
    emulator: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy organisation: after the lost create, the service's user makes more leads than one
    # page of events holds. Only the window the create can have been applied in is read, so
    # the answer fits in a page (before, paging back from now ran out of pages and fell back
    # to the grace period, by then over: a second lead).
    monkeypatch.setattr(events_module, "MAX_PAGES", 1)
    monkeypatch.setattr(unknown_module, "LATE_APPLY_SECONDS", 0.0)
    state = emulator_state(emulator)
    state.configure(search_lag_seconds=600.0)
    state.add_fault(**LOST)
    email = "busy-org@example.com"
    sub_id = await enqueue(queue, {"contact": {"email": email, "name": "Busy Org"}})
    settings = make_settings(
        unknown_outcome_grace_seconds=120.0,
        event_log_lag_seconds=3.0,
        close_timeout_seconds=1.0,
        close_clock_skew_seconds=0.0,
    )
    async with running_worker(settings, sources, redis):
        await wait_until(lambda: len(lead_posts(state)) == 1)
        await asyncio.sleep(1.2)  # past the mark + the Close timeout
        async with ClientSession() as http:
            close = emulator_client(http, emulator)
            for n in range(60):
                await close.create_lead({"name": f"Later {n}"})
        record = await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=20)
    assert record.state == "created" and "lead found in the event log" in steps(record)
    assert len(state.leads_with_email(email)) == 1
    windows = [r for r in state.requests if r.path == "/api/v1/event/"]
    assert windows and all(r.status == 200 for r in windows)


async def test_a_lost_create_does_not_claim_the_lead_another_submission_made_after_it(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    # The first submission's create is refused before it applies (it cannot know). The second
    # submission of the person waits out the event log's lag, sees nothing, and creates; its
    # answer is lost too. When the first one's retry comes after, it finds that lead in its
    # window: it is the second's (made after the second's mark), not the first's.
    state = emulator_state(emulator)
    state.configure(search_lag_seconds=600.0)
    state.add_fault(method="POST", path="/api/v1/lead/", status=503, count=1)
    state.add_fault(**LOST)
    email = "two-lost-creates@example.com"
    settings = make_settings(
        unknown_outcome_grace_seconds=120.0,
        event_log_lag_seconds=1.0,
        close_clock_skew_seconds=0.0,
        retry_base_seconds=4.0,
        retry_max_seconds=4.0,
        worker_concurrency=4,
    )
    first = await enqueue(queue, {"contact": {"email": email, "name": "First Lost"}})
    async with running_worker(settings, sources, redis):
        await wait_until(lambda: len(lead_posts(state)) == 1)
        second = await enqueue(queue, {"contact": {"email": email}, "notes": "again"})
        records = {
            sub_id: await wait_for_record(queue, sub_id, tuple(FINAL_STATES), within=30)
            for sub_id in (first, second)
        }
    assert len(state.leads_with_email(email)) == 1 and len(lead_posts(state)) == 2
    assert records[first].lead_id == records[second].lead_id
    # The one recorded as its maker sent the create that made it: the second (its one create),
    # or the first when its retry came before the second's create (then it created again).
    [maker] = [r for r in records.values() if r.progress.lead_created]
    assert {r.state for r in records.values()} == {"created", "attached"}
    creates = steps(maker).count("creating lead")
    assert creates == (2 if maker.id == first else 1), steps(maker)
