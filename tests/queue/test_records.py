"""The typed record: every progress field survives the trip through Redis, a replay keeps what
reached Close and drops the rest, and a record written before progress had its own field still
reads right."""

from __future__ import annotations

import time
from dataclasses import fields

from redis.asyncio import Redis

from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue import Progress, Queue, Record, StepMark, Transition
from service.queue.records import REPLAY_CLEARS

FULL = Progress(
    lead_created=True,
    lead_url="https://app.close.com/lead/lead_1/",
    matched_via="search:email",
    candidates=("lead_1", "lead_2"),
    create_started_at=1_700_000_000.25,
    next_attempt_at=1_700_000_060.5,
    link={"leads": ["lead_1", "lead_2"], "via": "search", "submission": "s1"},
    steps={
        "note": StepMark("done", 1_700_000_001.0, close_id="acti_1", detail={"k": [1]}),
        "contact": StepMark("skipped", 1_700_000_002.0, reason="already a contact"),
        "task": StepMark("failed", 1_700_000_003.0, reason="400", error={"status": 400}),
        "sequence": StepMark("started", 1_700_000_004.0),
    },
)


def test_the_full_progress_sets_every_field() -> None:
    # A field added to Progress must be added here too, or this test fails.
    defaults = Progress()
    assert all(getattr(FULL, f.name) != getattr(defaults, f.name) for f in fields(Progress))


async def add(queue: Queue) -> str:
    now = time.time()
    env = Envelope(new_submission_id(now), "partner", now, "application/json", {"a": 1})
    await queue.intake.enqueue(env)
    return env.id


async def test_every_progress_field_is_written_and_read_back(queue: Queue) -> None:
    sub_id = await add(queue)
    await queue.steps.apply(Transition(sub_id, "processing", progress=FULL, lead_id="lead_1"))
    record = await queue.records.get(sub_id)
    assert record is not None and record.progress == FULL and record.lead_id == "lead_1"
    public = record.to_public()
    assert public["candidates"] == ["lead_1", "lead_2"] and public["lead_created"] is True
    assert public["create_started_at"].endswith("Z")  # times as ISO-8601, like received_at


async def test_replay_keeps_what_reached_close_and_drops_the_rest(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    sub_id = await add(queue)
    [entry] = await queue.stream.read("c", 10, 100)
    await queue.steps.apply(
        Transition(sub_id, "created", progress=FULL, lead_id="lead_1", ack=entry)
    )
    assert await queue.records.replay(sub_id) == "replayed"
    raw = await redis.hgetall(keys.sub(sub_id))
    assert not set(REPLAY_CLEARS) & set(raw)
    record = Record.from_hash(raw)
    assert record.state == "queued" and record.attempts == 0
    # The lead and the steps done or skipped stay: they are not made again.
    assert record.lead_id == "lead_1" and record.progress.lead_created
    assert set(record.progress.steps) == {"note", "contact"}
    # The failed and the unfinished steps, and the attempt's timing, go: they run again.
    assert record.progress.create_started_at is None and record.progress.next_attempt_at is None
    assert record.previous_lead_id == "lead_1" and record.replayed_at is not None


def test_a_record_from_before_the_progress_field_reads_its_loose_fields() -> None:
    raw = {
        "id": "sub_1",
        "source": "partner",
        "state": "processing",
        "received_at": "1700000000.0",
        "updated_at": "1700000001.0",
        "attempts": "2",
        "lead_id": "lead_1",
        "lead_created": "1",
        "lead_url": "https://app.close.com/lead/lead_1/",
        "matched_via": "search:phone",
        "candidates": '["lead_1"]',
        "contact_done": "1",
        "contact_added": "True",
        "note_id": "acti_9",
        "create_started_at": "1700000000.5",
        "next_attempt_at": "1700000100.0",
    }
    record = Record.from_hash(raw)
    at = 1_700_000_001.0  # the record's last change: when those steps were at the latest
    assert record.progress == Progress(
        lead_created=True,
        lead_url="https://app.close.com/lead/lead_1/",
        matched_via="search:phone",
        candidates=("lead_1",),
        create_started_at=1_700_000_000.5,
        next_attempt_at=1_700_000_100.0,
        steps={"contact": StepMark("done", at), "note": StepMark("done", at, close_id="acti_9")},
    )
    assert record.unknown == {}  # the loose fields are known, not shown twice


def test_a_field_written_by_a_newer_version_is_kept_for_display() -> None:
    raw = {"id": "s", "source": "p", "state": "queued", "received_at": "1", "future": "x"}
    record = Record.from_hash(raw)
    assert record.unknown == {"future": "x"} and record.to_public()["future"] == "x"
