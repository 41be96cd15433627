"""The shared token bucket (one script for the door's rate limits and Close's pacing) and its
pause, against a real Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from service.errors import OverLimit
from service.keys import Keys
from service.queue import Queue, Throttle, buckets


async def take(
    redis: Redis,
    bucket: str,
    *,
    rate: float,
    capacity: float,
    pause: str | None = None,
    now: float | None = None,
    least: int = 1,
    most: int = 1,
) -> tuple[int, float]:
    """Tokens taken, and seconds to wait when none were."""
    taken, wait_ms = await buckets.TAKE.bind(redis)(
        buckets.BucketKeys(bucket, pause or buckets.no_pause(bucket)),
        buckets.BucketArgs(buckets.now_ms(now), rate, capacity, least, most),
    )
    return int(taken), int(wait_ms) / 1000.0


async def door_wait(
    queue: Queue, scope: str, *, rate: float, capacity: float, now: float | None = None
) -> float:
    """0.0 when the door's bucket gave a token, else the seconds to wait for one."""
    try:
        await queue.intake.take_tokens([Throttle("client", scope, rate, capacity)], now)
    except OverLimit as exc:
        return exc.wait
    return 0.0


async def test_bucket_allows_capacity_then_asks_to_wait(queue: Queue) -> None:
    now = 1_000_000.0
    waits = [await door_wait(queue, "ip:web:1", rate=10, capacity=3, now=now) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.09 <= waits[3] <= 0.11  # one token refills in 1/10 s
    assert await door_wait(queue, "ip:web:1", rate=10, capacity=3, now=now + 0.1) == 0.0


async def test_bucket_is_shared_by_concurrent_takers(queue: Queue) -> None:
    waits = await asyncio.gather(
        *(door_wait(queue, "source:web", rate=5, capacity=5, now=2_000_000.0) for _ in range(12))
    )
    assert sum(1 for w in waits if w == 0.0) == 5


async def test_several_tokens_are_taken_at_once_up_to_what_the_bucket_holds(
    redis: Redis, keys: Keys
) -> None:
    bucket = keys.close("bucket:write")
    now = 3_000_000.0
    assert await take(redis, bucket, rate=10, capacity=7, now=now, most=5) == (5, 0.0)
    assert await take(redis, bucket, rate=10, capacity=7, now=now, most=5) == (2, 0.0)
    taken, wait = await take(redis, bucket, rate=10, capacity=7, now=now, most=5)
    assert taken == 0 and 0.09 <= wait <= 0.11


async def test_pause_key_makes_everyone_wait(redis: Redis, keys: Keys) -> None:
    pause = keys.close("pause")
    bucket = keys.close("bucket:read")
    await redis.set(pause, "429", px=1500)
    taken, wait = await take(redis, bucket, rate=100, capacity=100, pause=pause)
    assert taken == 0 and 1.0 < wait <= 1.5
    await redis.delete(pause)
    assert await take(redis, bucket, rate=100, capacity=100, pause=pause) == (1, 0.0)


async def test_bucket_key_expires(queue: Queue, redis: Redis, keys: Keys) -> None:
    await door_wait(queue, "ip:website:203.0.113.9", rate=1, capacity=2)
    assert 0 < await redis.pttl(keys.throttle("ip:website:203.0.113.9")) <= 3000
