"""The steps after the lead: a refused step never undoes the lead, a transient failure resumes
after the last recorded step, and each step is recorded with what Close made."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from service.config.settings import Settings
from service.config.sources import Sources
from service.mapping.note import has_marker
from service.metrics import Metrics
from service.queue import Queue
from tests.conftest import emulator_state, enqueue, running_worker, wait_for_record, wait_until

NOTE = "/api/v1/activity/note/"


def posts(emulator: TestServer, path: str) -> int:
    return sum(
        1 for r in emulator_state(emulator).requests if r.method == "POST" and r.path == path
    )


async def test_a_note_close_refuses_is_marked_failed_and_the_lead_stands(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    state.add_fault(method="POST", path=NOTE, status=400, count=1)
    metrics = Metrics()
    sub_id = await enqueue(queue, {"contact": {"email": "nia@example.com"}, "notes": "hi"})
    async with running_worker(settings, sources, redis, metrics=metrics):
        record = await wait_for_record(queue, sub_id, ("created", "dead"))
    assert record.state == "created" and record.lead_id
    note = record.progress.steps["note"]
    assert note.state == "failed" and note.error["status"] == 400
    assert record.history[-1]["detail"]["failed_steps"] == ["note"]
    assert state.notes_for(record.lead_id) == []
    assert metrics.steps.labels("partner", "note", "failed")._value.get() == 1
    public = record.to_public()
    assert public["steps"]["note"]["state"] == "failed"


async def test_a_lost_note_answer_resumes_after_the_lead_and_posts_the_note_once(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    # Close fails the note before applying it: the next attempt must not create a second lead.
    state.add_fault(method="POST", path=NOTE, status=503, count=1)
    sub_id = await enqueue(queue, {"contact": {"email": "oli@example.com"}, "notes": "hello"})
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id, ("created",), within=15)
    assert record.lead_id and len(state.leads_with_email("oli@example.com")) == 1
    note = record.progress.steps["note"]
    assert note.state == "done" and note.close_id
    assert [n["id"] for n in state.notes_for(record.lead_id)] == [note.close_id]
    assert posts(emulator, NOTE) == 2  # the refused one, and the one that made the note
    steps = [e["detail"].get("step") for e in record.history if e.get("detail")]
    assert steps.count("lead created") == 1 and "note started" in steps


async def test_a_returning_person_gets_a_note_on_their_lead_and_no_search(
    queue: Queue,
    make_settings: Any,
    sources: Sources,
    redis: Redis,
    emulator: TestServer,
) -> None:
    settings = make_settings()
    first = await enqueue(queue, {"contact": {"email": "pat@example.com"}, "notes": "one"})
    async with running_worker(settings, sources, redis):
        created = await wait_for_record(queue, first, ("created",))
        searches = sum(1 for r in emulator_state(emulator).requests if "search" in r.path)
        second = await enqueue(queue, {"contact": {"email": "pat@example.com"}, "notes": "two"})
        attached = await wait_for_record(queue, second, ("attached",))
    assert attached.lead_id == created.lead_id and attached.progress.matched_via == "cache"
    assert sum(1 for r in emulator_state(emulator).requests if "search" in r.path) == searches
    assert attached.progress.steps["note"].state == "done"
    assert created.lead_id is not None
    assert len(emulator_state(emulator).notes_for(created.lead_id)) == 2


def note_of(state: Any, lead_id: str, sub_id: str) -> list[dict[str, Any]]:
    """The lead's notes carrying the submission's marker (as the worker looks for it)."""
    return [n for n in state.notes_for(lead_id) if has_marker(n["note_html"], sub_id)]


async def test_a_note_applied_then_answered_5xx_is_found_by_its_marker_not_posted_again(
    queue: Queue, settings: Settings, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    # Close makes the note, then the answer is lost: the retry finds it.
    state.add_fault(method="POST", path=NOTE, status=502, after_apply=True)
    sub_id = await enqueue(queue, {"contact": {"email": "ola@example.com"}, "notes": "hi"})
    async with running_worker(settings, sources, redis):
        record = await wait_for_record(queue, sub_id, ("created",), within=15)
    assert record.lead_id is not None and record.attempts == 2
    notes = state.notes_for(record.lead_id)
    assert len(notes) == 1 and note_of(state, record.lead_id, sub_id) == notes
    assert notes[0]["note"].endswith(f"\n\nLead Intake submission {sub_id}")
    mark = record.progress.steps["note"]
    assert mark.state == "done" and mark.close_id == notes[0]["id"]
    assert mark.detail["how"] == "found after a lost answer"
    assert posts(emulator, NOTE) == 1
    listed = [r for r in state.requests if r.method == "GET" and r.path == NOTE]
    assert len(listed) == 1 and "date_created__gte" in listed[0].query


async def test_a_worker_dead_after_the_note_post_leaves_one_note(
    queue: Queue, make_settings: Any, sources: Sources, redis: Redis, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    # The note is applied, the answer never comes back: the worker is stopped waiting for it,
    # with the note step recorded started and nothing after it.
    state.add_fault(method="POST", path=NOTE, after_apply=True, hang=True, hang_seconds=30)
    sub_id = await enqueue(queue, {"contact": {"email": "uma@example.com"}, "notes": "hi"})
    crashing = make_settings(shutdown_grace_seconds=0, visibility_timeout_seconds=1.0)
    async with running_worker(crashing, sources, redis, consumer="doomed"):
        await wait_until(lambda: state.notes)
    record = await queue.records.get(sub_id)
    assert record is not None and record.state == "processing"
    assert record.progress.steps["note"].state == "started"
    state.wake_hangs()
    rescuer = make_settings(visibility_timeout_seconds=1.0)
    async with running_worker(rescuer, sources, redis, consumer="rescuer"):
        record = await wait_for_record(queue, sub_id, ("created",), within=15)
    assert record.lead_id is not None
    notes = state.notes_for(record.lead_id)
    assert len(notes) == 1 and note_of(state, record.lead_id, sub_id) == notes
    assert record.progress.steps["note"].close_id == notes[0]["id"]
    assert record.progress.steps["note"].detail["how"] == "found after a lost answer"
    assert posts(emulator, NOTE) == 1
