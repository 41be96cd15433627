"""Group commit at the door: concurrent enqueues share round trips, each gets its own answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.dev.redis_server import RedisServer
from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue import DeliveryKey, Queue
from service.queue.batching import ScriptBatcher
from service.queue.lua import Script


def envelope(n: int) -> Envelope:
    return Envelope(
        id=new_submission_id(),
        source="website",
        received_at=time.time(),
        content_type="application/json",
        body={"email": f"b{n}@example.com"},
    )


@dataclass(frozen=True)
class NoKeys:
    pass


@dataclass(frozen=True)
class Word:
    word: str


class CountingBatcher(ScriptBatcher[Any, Any]):
    round_trips = 0

    async def _run(self, batch: list[tuple[Any, Any, Any]]) -> list[Any]:
        type(self).round_trips += 1
        return await super()._run(batch)


async def test_concurrent_enqueues_share_round_trips_and_each_is_stored(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    queue.intake._store = CountingBatcher(queue.redis, queue.intake._store.bound)
    envelopes = [envelope(n) for n in range(200)]
    results = await asyncio.gather(*(queue.intake.enqueue(e) for e in envelopes))
    assert results == [(e.id, True) for e in envelopes]
    assert await redis.xlen(keys.stream) == 200
    assert CountingBatcher.round_trips < 20  # far fewer than one per request
    records = await queue.index.records([e.id for e in envelopes])
    assert all(r is not None and r.state == "queued" for r in records)


async def test_repeats_inside_one_batch_are_recognised(
    queue: Queue, redis: Redis, keys: Keys
) -> None:
    key = DeliveryKey("webhook-id", "msg-9", 60)
    first, *rest = [envelope(n) for n in range(10)]
    results = await asyncio.gather(
        queue.intake.enqueue(first, key), *(queue.intake.enqueue(e, key) for e in rest)
    )
    assert results[0] == (first.id, True)
    assert all(r == (first.id, False) for r in results[1:])
    assert await redis.xlen(keys.stream) == 1


async def test_script_cache_lost_is_reloaded(queue: Queue, redis: Redis, keys: Keys) -> None:
    await redis.script_flush()
    results = await asyncio.gather(*(queue.intake.enqueue(envelope(n)) for n in range(30)))
    assert all(stored for _, stored in results)
    assert await redis.xlen(keys.stream) == 30


async def test_an_error_reply_fails_only_its_own_caller(redis: Redis) -> None:
    script = Script(
        NoKeys,
        Word,
        "if A.word == 'bad' then return redis.error_reply('refused') end return A.word",
    )
    await redis.script_load(script.text)
    batcher = ScriptBatcher(redis, script.bind(redis))
    results = await asyncio.gather(
        *(batcher(NoKeys(), Word(arg)) for arg in ("a", "bad", "c")), return_exceptions=True
    )
    assert results[0::2] == ["a", "c"]
    assert isinstance(results[1], ResponseError) and "refused" in str(results[1])
    assert await batcher(NoKeys(), Word("next")) == "next"  # the replies stay in step


async def test_redis_gone_fails_every_waiting_request() -> None:
    server = RedisServer()
    server.start()
    client: Redis = Redis.from_url(server.url, decode_responses=True)
    queue = Queue(client, Keys("gone"), record_ttl=60)
    try:
        await queue.intake.enqueue(envelope(0))
        server.stop(remove=False)
        results = await asyncio.gather(
            *(queue.intake.enqueue(envelope(n)) for n in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results)
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("size", [1, 2])
async def test_small_batches_work(queue: Queue, size: int) -> None:
    results = await asyncio.gather(*(queue.intake.enqueue(envelope(n)) for n in range(size)))
    assert all(stored for _, stored in results)
