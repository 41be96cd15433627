"""Group commit at the door: concurrent enqueues share round trips, each gets its own answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.envelope import Envelope, new_submission_id
from service.keys import Keys
from service.queue.batching import ScriptBatcher
from service.queue.stream import DeliveryKey, WorkQueue
from service.redis_server import RedisServer


def envelope(n: int) -> Envelope:
    return Envelope(
        id=new_submission_id(),
        source="website",
        received_at=time.time(),
        content_type="application/json",
        body={"email": f"b{n}@example.com"},
    )


class CountingBatcher(ScriptBatcher):
    round_trips = 0

    async def _run(self, batch: list[tuple[Any, Any, Any]]) -> list[Any]:
        type(self).round_trips += 1
        return await super()._run(batch)


async def test_concurrent_enqueues_share_round_trips_and_each_is_stored(
    queue: WorkQueue, redis: Redis, keys: Keys
) -> None:
    queue._enqueue = CountingBatcher(queue.redis, queue.scripts.enqueue)
    envelopes = [envelope(n) for n in range(200)]
    results = await asyncio.gather(*(queue.enqueue(e) for e in envelopes))
    assert results == [(e.id, True) for e in envelopes]
    assert await redis.xlen(keys.stream) == 200
    assert CountingBatcher.round_trips < 20  # far fewer than one per request
    records = await queue.records([e.id for e in envelopes])
    assert all(r is not None and r.state == "queued" for r in records)


async def test_repeats_inside_one_batch_are_recognised(
    queue: WorkQueue, redis: Redis, keys: Keys
) -> None:
    key = DeliveryKey("webhook-id", "msg-9", 60)
    first, *rest = [envelope(n) for n in range(10)]
    results = await asyncio.gather(
        queue.enqueue(first, key), *(queue.enqueue(e, key) for e in rest)
    )
    assert results[0] == (first.id, True)
    assert all(r == (first.id, False) for r in results[1:])
    assert await redis.xlen(keys.stream) == 1


async def test_script_cache_lost_is_reloaded(queue: WorkQueue, redis: Redis, keys: Keys) -> None:
    await redis.script_flush()
    results = await asyncio.gather(*(queue.enqueue(envelope(n)) for n in range(30)))
    assert all(stored for _, stored in results)
    assert await redis.xlen(keys.stream) == 30


async def test_an_error_reply_fails_only_its_own_caller(redis: Redis) -> None:
    script = redis.register_script(
        "if ARGV[1] == 'bad' then return redis.error_reply('refused') end return ARGV[1]"
    )
    await redis.script_load(script.script)
    batcher = ScriptBatcher(redis, script)
    results = await asyncio.gather(
        *(batcher([], [arg]) for arg in ("a", "bad", "c")), return_exceptions=True
    )
    assert results[0::2] == ["a", "c"]
    assert isinstance(results[1], ResponseError) and "refused" in str(results[1])
    assert await batcher([], ["next"]) == "next"  # the connection's replies stay in step


async def test_redis_gone_fails_every_waiting_request() -> None:
    server = RedisServer()
    server.start()
    client: Redis = Redis.from_url(server.url, decode_responses=True)
    queue = WorkQueue(client, Keys("gone"), record_ttl=60)
    try:
        await queue.enqueue(envelope(0))
        server.stop(remove=False)
        results = await asyncio.gather(
            *(queue.enqueue(envelope(n)) for n in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results)
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("size", [1, 2])
async def test_small_batches_work(queue: WorkQueue, size: int) -> None:
    results = await asyncio.gather(*(queue.enqueue(envelope(n)) for n in range(size)))
    assert all(stored for _, stored in results)
