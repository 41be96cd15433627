"""The shared token bucket and pause, against a real Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from service.keys import Keys
from service.queue.buckets import take
from service.queue.stream import WorkQueue


async def test_bucket_allows_capacity_then_asks_to_wait(queue: WorkQueue, keys: Keys) -> None:
    bucket = keys.close("bucket:lead_write")
    now = 1_000_000.0
    waits = [await take(queue.rate_bucket, bucket, rate=10, capacity=3, now=now) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.09 <= waits[3] <= 0.11  # one token refills in 1/10 s
    assert await take(queue.rate_bucket, bucket, rate=10, capacity=3, now=now + 0.1) == 0.0


async def test_bucket_is_shared_by_concurrent_takers(queue: WorkQueue, keys: Keys) -> None:
    bucket = keys.close("bucket:search")
    waits = await asyncio.gather(
        *(take(queue.rate_bucket, bucket, rate=5, capacity=5, now=2_000_000.0) for _ in range(12))
    )
    assert sum(1 for w in waits if w == 0.0) == 5


async def test_pause_key_makes_everyone_wait(queue: WorkQueue, redis: Redis, keys: Keys) -> None:
    pause = keys.close("pause")
    await redis.set(pause, "429", px=1500)
    wait = await take(
        queue.rate_bucket, keys.close("bucket:read"), rate=100, capacity=100, pause_key=pause
    )
    assert 1.0 < wait <= 1.5
    await redis.delete(pause)
    assert (
        await take(
            queue.rate_bucket, keys.close("bucket:read"), rate=100, capacity=100, pause_key=pause
        )
        == 0.0
    )


async def test_bucket_key_expires(queue: WorkQueue, redis: Redis, keys: Keys) -> None:
    bucket = keys.throttle("ip:website:203.0.113.9")
    await take(queue.rate_bucket, bucket, rate=1, capacity=2)
    assert 0 < await redis.pttl(bucket) <= 3000
