"""The worker's combined Redis steps (claim, transition with the person's keys), real Redis."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from service.envelope import Envelope, new_submission_id
from service.keys import GROUP, Keys
from service.queue import Claimed, Entry, PersonUpdate, Progress, Queue, Transition
from service.queue.records import Record


async def queued(queue: Queue) -> Entry:
    now = time.time()
    env = Envelope(
        id=new_submission_id(now),
        source="partner",
        received_at=now,
        content_type="application/json",
        body={"contact": {"email": "ann@example.com"}},
    )
    await queue.intake.enqueue(env)
    [entry] = [e for e in await queue.stream.read("c1", 10, 100) if e.sub_id == env.id]
    return entry


async def test_claim_reads_the_record_and_marks_it_processing(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    claimed = await queue.steps.claim(entry)
    raw = claimed.fields
    assert claimed.state == "processing" and raw is not None
    assert "history" not in raw  # the worker does not need it; it stays in Redis
    record = Record.from_hash(raw)
    assert (record.id, record.state, record.attempts) == (entry.sub_id, "processing", 1)
    assert record.envelope and json.loads(record.envelope)["id"] == entry.sub_id
    stored = await queue.records.get(entry.sub_id)
    assert stored is not None and stored.attempts == 1
    assert [e["state"] for e in stored.history] == ["queued", "processing"]
    assert stored.history[-1]["detail"] == {"attempt": 1}
    assert await redis.zscore(keys.state("processing"), entry.sub_id) is not None
    assert await redis.zscore(keys.state("queued"), entry.sub_id) is None
    # Still pending: the claim does not acknowledge a submission it is about to process.
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 1
    # A second attempt counts on, and its history event says so.
    again = (await queue.steps.claim(entry)).fields
    assert again is not None and again["attempts"] == "2"
    stored = await queue.records.get(entry.sub_id)
    assert stored is not None and stored.history[-1]["detail"] == {"attempt": 2}
    assert len(stored.history) == 3


async def test_claim_acknowledges_a_finished_or_missing_record_and_changes_nothing(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    await queue.steps.apply(Transition(entry.sub_id, "created", lead_id="lead_1"))
    before = await redis.hgetall(keys.sub(entry.sub_id))
    assert await queue.steps.claim(entry) == Claimed("created")
    assert await redis.hgetall(keys.sub(entry.sub_id)) == before
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0
    assert await redis.xlen(keys.stream) == 0

    gone = await queued(queue)
    await redis.delete(keys.sub(gone.sub_id))
    assert await queue.steps.claim(gone) == Claimed("")
    assert await redis.exists(keys.sub(gone.sub_id)) == 0  # nothing recreated
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_claim_repairs_a_damaged_attempt_count(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    await redis.hset(keys.sub(entry.sub_id), "attempts", "many")
    claimed = await queue.steps.claim(entry)
    raw = claimed.fields
    assert claimed.state == "processing" and raw is not None and raw["attempts"] == "1"


def person_keys(keys: Keys, identity: str) -> tuple[str, str, str]:
    return keys.lock(identity), keys.lead(identity), keys.creating(identity)


async def test_a_transition_writes_the_persons_keys_in_the_same_step(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    await queue.steps.claim(entry)
    people = ["e:one", "p:two"]
    # Before the create: the marks, with the progress.
    await queue.steps.apply(
        Transition(
            entry.sub_id,
            "processing",
            progress=Progress(create_started_at=1.0),
            person=PersonUpdate(people, mark_creating=entry.sub_id, mark_ttl=5.0),
        )
    )
    for identity in people:
        _, lead, mark = person_keys(keys, identity)
        assert await redis.get(mark) == entry.sub_id
        assert 4000 < await redis.pttl(mark) <= 5000
        assert await redis.exists(lead) == 0
    record = await queue.records.get(entry.sub_id)
    assert record is not None and record.progress.create_started_at == 1.0
    # After it: the lead cached and the marks cleared, with the progress.
    await queue.steps.apply(
        Transition(
            entry.sub_id,
            "processing",
            lead_id="lead_9",
            person=PersonUpdate(people, cache_lead="lead_9", cache_ttl=60, clear_creating=True),
        )
    )
    for identity in people:
        _, lead, mark = person_keys(keys, identity)
        assert await redis.get(lead) == "lead_9"
        assert 0 < await redis.ttl(lead) <= 60
        assert await redis.exists(mark) == 0


async def test_the_outcome_releases_only_the_locks_this_holder_owns(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    await queue.steps.claim(entry)
    mine, theirs = keys.lock("e:mine"), keys.lock("p:theirs")
    await redis.set(mine, "token-a", px=10_000)
    await redis.set(theirs, "token-b", px=10_000)  # expired and taken over meanwhile
    await queue.steps.apply(
        Transition(
            entry.sub_id,
            "created",
            ack=entry,
            person=PersonUpdate(["e:mine", "p:theirs"], release_token="token-a"),
        )
    )
    assert await redis.exists(mine) == 0
    assert await redis.get(theirs) == "token-b"
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0
    record = await queue.records.get(entry.sub_id)
    assert record is not None and record.state == "created"


async def test_the_persons_keys_are_written_even_when_the_record_is_gone(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    await redis.delete(keys.sub(entry.sub_id))  # erased or expired while a lead was created
    await redis.set(keys.lock("e:x"), "tok", px=10_000)
    result = await queue.steps.apply(
        Transition(
            entry.sub_id,
            "processing",
            person=PersonUpdate(["e:x"], cache_lead="lead_1", cache_ttl=60, release_token="tok"),
        )
    )
    assert result == -1
    assert await redis.exists(keys.sub(entry.sub_id)) == 0
    assert await redis.get(keys.lead("e:x")) == "lead_1"  # the next submission finds the lead
    assert await redis.exists(keys.lock("e:x")) == 0


async def test_a_transition_without_person_leaves_the_persons_keys_alone(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    entry = await queued(queue)
    await redis.set(keys.lock("e:x"), "tok", px=10_000)
    await queue.steps.apply(Transition(entry.sub_id, "processing", person=PersonUpdate([])))
    await queue.steps.apply(Transition(entry.sub_id, "processing", lead_id="lead_2"))
    assert await redis.get(keys.lock("e:x")) == "tok"


async def test_a_transition_indexes_the_submission_by_person_and_lead_and_prunes_old_ones(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    # The dashboard's search sets: the id scored by receipt, kept as long as a record, and
    # members received before the records' retention dropped in the same step.
    entry = await queued(queue)
    await queue.steps.claim(entry)
    person, lead = keys.person("e:one"), keys.lead_submissions("lead_7")
    for key in (person, lead):
        await redis.zadd(key, {"sub_long_gone": 1.0, "sub_recent": time.time() - 60})
    await queue.steps.apply(
        Transition(entry.sub_id, "created", lead_id="lead_7", person=PersonUpdate(["e:one"]))
    )
    record = await queue.records.get(entry.sub_id)
    assert record is not None
    for key in (person, lead):
        rows: Any = await redis.zrange(key, 0, -1, withscores=True)
        members = dict(rows)
        assert set(members) == {"sub_recent", entry.sub_id}
        assert members[entry.sub_id] == record.received_at
        assert 0 < await redis.ttl(key) <= queue.record_ttl
