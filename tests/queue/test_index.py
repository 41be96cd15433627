"""The state index: listing and counting submissions, erasing one, pruning what expired."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue import Queue, Selection, Transition


async def add(queue: Queue, source: str, at: float, email: str = "ix@example.com") -> str:
    env = Envelope(
        id=new_submission_id(at),
        source=source,
        received_at=at,
        content_type="application/json",
        body={"email": email},
    )
    await queue.intake.enqueue(env)
    return env.id


async def test_counts_follow_every_state_change(queue: Queue) -> None:
    now = time.time()
    first, second, third = [await add(queue, "website", now + i) for i in range(3)]
    entries = {e.sub_id: e for e in await queue.stream.read("c", 10, 100)}
    await queue.steps.apply(Transition(first, "processing"))
    await queue.steps.apply(Transition(first, "created", ack=entries[first]))
    await queue.steps.apply(Transition(second, "dead", ack=entries[second], dead=True))
    counts = await queue.index.counts()
    assert {s: n for s, n in counts.items() if n} == {"queued": 1, "created": 1, "dead": 1}
    assert await queue.records.replay(second) == "replayed"
    counts = await queue.index.counts()
    assert (counts["queued"], counts["dead"]) == (2, 0)
    assert third


async def test_list_newest_first_filtered_by_state_source_and_time(queue: Queue) -> None:
    base = time.time() - 100
    ids = {}
    for i, source in enumerate(["website", "partner", "website", "website", "partner"]):
        ids[i] = await add(queue, source, base + i)
    entries = {e.sub_id: e for e in await queue.stream.read("c", 10, 100)}
    await queue.steps.apply(Transition(ids[3], "rejected", ack=entries[ids[3]]))
    listed = await queue.index.select(Selection())
    assert [r.id for r in listed] == [ids[i] for i in (4, 3, 2, 1, 0)]
    websites = await queue.index.select(Selection(source="website", states=("queued",)))
    assert [r.id for r in websites] == [ids[2], ids[0]]
    window = await queue.index.select(Selection(since=base + 1, until=base + 3))
    assert [r.id for r in window] == [ids[3], ids[2], ids[1]]
    assert [r.id for r in await queue.index.select(Selection(limit=2))] == [ids[4], ids[3]]
    assert [r.id for r in await queue.index.select(Selection(states=("rejected",)))] == [ids[3]]


async def test_list_pages_past_other_sources(queue: Queue) -> None:
    base = time.time() - 1000
    wanted = await add(queue, "rare", base)
    for i in range(30):  # many newer submissions of another source
        await add(queue, "busy", base + 1 + i)
    assert [r.id for r in await queue.index.select(Selection(source="rare", limit=5))] == [wanted]


async def test_erase_leaves_a_tombstone_without_personal_data(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    sub_id = await add(queue, "website", time.time(), "erase.me@example.com")
    [entry] = await queue.stream.read("c", 1, 100)
    await queue.steps.apply(Transition(sub_id, "dead", ack=entry, dead=True, last_error={"x": 1}))
    assert await queue.records.erase(sub_id) == "erased"
    raw = await redis.hgetall(keys.sub(sub_id))
    assert "erase.me" not in str(raw)
    assert raw["state"] == "erased" and raw["erased_from"] == "dead"
    assert "envelope" not in raw and "last_error" not in raw
    assert await redis.xlen(keys.dead) == 0
    counts = await queue.index.counts()
    assert (counts["dead"], counts["erased"]) == (0, 1)
    assert await queue.records.erase(sub_id) == "already-erased"
    assert await queue.records.erase("sub_unknown") == "unknown"
    assert await queue.records.replay(sub_id) == "erased"  # nothing left to replay
    # A worker holding an entry of an erased submission changes nothing.
    assert await queue.steps.apply(Transition(sub_id, "created")) == -1
    record = await queue.records.get(sub_id)
    assert record is not None and record.state == "erased" and record.terminal


async def test_prune_drops_only_expired_records(queue: Queue, redis: Redis, keys: Keys) -> None:
    old = time.time() - queue.record_ttl - 60
    expired = await add(queue, "website", old)
    kept = await add(queue, "website", old)  # old, but its record was refreshed since
    await redis.delete(keys.sub(expired))
    assert await queue.index.prune() == 1
    remaining = await redis.zrange(keys.state("queued"), 0, -1)
    assert remaining == [kept]


async def test_the_door_puts_a_new_record_in_its_states_index_alone(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    at = time.time()
    queued = await add(queue, "website", at)
    spam = Envelope(
        id=new_submission_id(at),
        source="website",
        received_at=at,
        content_type="application/json",
        body={"email": "spam@example.com"},
    )
    await queue.intake.store_rejected(spam, "spam")
    assert await redis.zscore(keys.state("queued"), queued) == at  # scored by receipt, exactly
    assert await redis.zscore(keys.state("rejected"), spam.id) == at
    assert await redis.zscore(keys.state("queued"), spam.id) is None
    assert 0 < await redis.ttl(keys.state("queued")) <= queue.intake.record_ttl
