"""The Redis side of the pipeline against a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import fields

from redis.asyncio import Redis

from service.envelope import Envelope, new_submission_id
from service.keys import GROUP, Keys
from service.queue import DeliveryKey, Queue, Transition


def envelope(source: str = "website", body: object = None) -> Envelope:
    now = time.time()
    return Envelope(
        id=new_submission_id(now),
        source=source,
        received_at=now,
        content_type="application/json",
        body=body or {"email": "ann@example.com"},
    )


async def test_keys_share_one_hash_tag() -> None:
    keys = Keys("intake")
    assert keys.stream == "{intake}:stream"
    assert keys.sub("x") == "{intake}:sub:x"
    for key in (keys.retry, keys.dead, keys.idem("s", "k"), keys.lock("i"), keys.lead("i")):
        assert key.startswith("{intake}:")


async def test_submission_ids_sort_by_time() -> None:
    first = new_submission_id(1_700_000_000.0)
    second = new_submission_id(1_700_000_000.5)
    assert first.startswith("sub_") and len(first) == 30
    assert first < second


async def test_enqueue_writes_record_and_entry_with_ttl(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    env = envelope()
    assert await queue.intake.enqueue(env) == (env.id, True)
    [(_, fields)] = await redis.xrange(keys.stream)
    assert fields == {"sub": env.id, "source": "website"}
    record = await queue.records.get(env.id)
    assert record is not None
    assert record.state == "queued" and record.attempts == 0
    assert [e["state"] for e in record.history] == ["queued"]
    assert Envelope.from_json(record.envelope or "") == env
    ttl = await redis.ttl(keys.sub(env.id))
    assert 0 < ttl <= queue.record_ttl


async def test_finish_records_acks_and_deletes_in_one_step(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    env = envelope()
    await queue.intake.enqueue(env)
    [entry] = await queue.stream.read("c1", 10, 100)
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 1
    attempts = await queue.steps.apply(Transition(env.id, "processing", attempts_delta=1))
    assert attempts == 1
    await queue.steps.apply(Transition(env.id, "created", ack=entry, lead_id="lead_1"))
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0
    assert await redis.xlen(keys.stream) == 0
    record = await queue.records.get(env.id)
    assert record is not None
    assert (record.state, record.lead_id, record.attempts) == ("created", "lead_1", 1)
    assert [e["state"] for e in record.history] == ["queued", "processing", "created"]


async def test_transition_does_not_resurrect_an_erased_record(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    env = envelope()
    await queue.intake.enqueue(env)
    [entry] = await queue.stream.read("c1", 10, 100)
    await redis.delete(keys.sub(env.id))
    assert await queue.steps.apply(Transition(env.id, "created", ack=entry)) == -1
    assert not await redis.exists(keys.sub(env.id))
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_retry_schedule_moves_due_entries_back_once(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    env = envelope()
    await queue.intake.enqueue(env)
    [entry] = await queue.stream.read("c1", 10, 100)
    due = time.time() + 0.1
    await queue.steps.apply(
        Transition(env.id, "retrying", ack=entry, retry_at=due, source="website")
    )
    assert await redis.xlen(keys.stream) == 0
    assert await queue.stream.move_due(now=due - 1) == 0
    # Several workers race to move the same due entry: exactly one re-queues it.
    moved = await asyncio.gather(*(queue.stream.move_due(now=due + 1) for _ in range(8)))
    assert sum(moved) == 1
    [again] = await queue.stream.read("c2", 10, 100)
    assert (again.sub_id, again.source) == (env.id, "website")
    assert await redis.zcard(keys.retry) == 0


async def test_dead_adds_a_dead_letter_entry(queue: Queue, redis: Redis, keys: Keys) -> None:
    env = envelope()
    await queue.intake.enqueue(env)
    [entry] = await queue.stream.read("c1", 10, 100)
    await queue.steps.apply(
        Transition(
            env.id,
            "dead",
            ack=entry,
            dead=True,
            source="website",
            detail={"reason": "Close said 400"},
        )
    )
    dead = await redis.xrange(keys.dead)
    assert [fields for _, fields in dead] == [{"sub": env.id, "source": "website"}]
    assert await redis.xlen(keys.stream) == 0


async def test_autoclaim_takes_over_idle_entries_only(queue: Queue) -> None:
    env = envelope()
    await queue.intake.enqueue(env)
    [entry] = await queue.stream.read("dying-consumer", 10, 100)
    assert await queue.stream.autoclaim("rescuer", min_idle_ms=10_000, count=10) == []
    await asyncio.sleep(0.15)
    [claimed] = await queue.stream.autoclaim("rescuer", min_idle_ms=100, count=10)
    assert claimed == entry


async def test_touch_keeps_an_entry_from_being_reclaimed(queue: Queue) -> None:
    await queue.intake.enqueue(envelope())
    [entry] = await queue.stream.read("busy", 10, 100)
    await asyncio.sleep(0.15)
    await queue.stream.touch("busy", [entry.entry_id])
    assert await queue.stream.autoclaim("other", min_idle_ms=100, count=10) == []


async def test_missing_group_is_recreated(queue: Queue, redis: Redis, keys: Keys) -> None:
    await redis.delete(keys.stream)
    assert not await queue.stream.group_exists()
    assert await queue.stream.read("c1", 1, 10) == []
    assert await queue.stream.group_exists()
    env = envelope()
    await queue.intake.enqueue(env)
    [entry] = await queue.stream.read("c1", 1, 100)
    assert entry.sub_id == env.id


async def test_ensure_group_is_idempotent(queue: Queue) -> None:
    await queue.stream.ensure_group()
    await queue.stream.ensure_group()
    assert await queue.stream.group_exists()


async def test_repeated_delivery_key_returns_first_id_and_stores_nothing(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    key = DeliveryKey("webhook-id", "abc123", 60)
    first, second = envelope(), envelope()
    assert await queue.intake.enqueue(first, key) == (first.id, True)
    assert await queue.intake.enqueue(second, key) == (first.id, False)
    assert await redis.xlen(keys.stream) == 1
    assert not await redis.exists(keys.sub(second.id))
    assert 0 < await redis.ttl(keys.idem("website", "abc123")) <= 60
    record = await queue.records.get(first.id)
    assert record is not None and record.delivery_key == "webhook-id"


async def test_concurrent_repeats_queue_exactly_one(queue: Queue, redis: Redis, keys: Keys) -> None:
    key = DeliveryKey("idempotency-key", "same", 60)
    results = await asyncio.gather(*(queue.intake.enqueue(envelope(), key) for _ in range(25)))
    assert sum(queued for _, queued in results) == 1
    assert len({sub_id for sub_id, _ in results}) == 1
    assert await redis.xlen(keys.stream) == 1


async def test_store_rejected_keeps_a_record_and_queues_nothing(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    spam = envelope(body={"email": "bot@example.com", "fax": "555"})
    assert await queue.intake.store_rejected(spam, "spam") == (spam.id, True)
    record = await queue.records.get(spam.id)
    assert record is not None and record.state == "rejected" and record.terminal
    assert record.reason == "spam"
    assert [event["state"] for event in record.history] == ["received", "rejected"]
    assert record.history[-1]["detail"] == {"reason": "spam"}
    assert record.to_public()["payload"] == {"email": "bot@example.com", "fax": "555"}
    assert not await redis.exists(keys.stream) or await redis.xlen(keys.stream) == 0
    assert 0 < await redis.ttl(keys.sub(spam.id)) <= queue.record_ttl


def test_envelope_json_round_trip_keeps_every_field() -> None:
    env = Envelope(
        id="sub_x",
        source="website",
        received_at=1.5,
        content_type="application/json",
        body={"a": [1, {"b": "é"}]},
        headers={"referer": "https://x"},
        query={"q": "1"},
        client_ip="203.0.113.9",
        fetched={"field_data": [{"name": "email", "values": ["a@example.com"]}]},
    )
    assert Envelope.from_json(env.to_json()) == env
    assert set(json.loads(env.to_json())) == {f.name for f in fields(Envelope)}
    # What hydration fetched is written only when there is some.
    thin = dataclasses.replace(env, fetched=None)
    assert "fetched" not in json.loads(thin.to_json())
    assert Envelope.from_json(thin.to_json()) == thin
