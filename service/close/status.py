"""The delivery status every part shows: the queue's depth and Close's shared pauses, read
together (the admin overview, the metrics of the receiver and of the worker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.exceptions import RedisError

from service.close.pacing import DeliveryState, delivery_state
from service.metrics import Metrics
from service.queue import Queue, QueueDepth
from service.queue.connection import read_durability


@dataclass(frozen=True, slots=True)
class Status:
    depth: QueueDepth
    delivery: DeliveryState


async def read_status(queue: Queue) -> Status:
    depth, delivery = await asyncio.gather(
        queue.stream.depth(), delivery_state(queue.redis, queue.keys)
    )
    return Status(depth, delivery)


async def refresh_metrics(metrics: Metrics, queue: Queue) -> None:
    """Read the shared state from Redis into the gauges (``redis_up`` 0 when unreachable)."""
    try:
        status, durability = await asyncio.gather(read_status(queue), read_durability(queue.redis))
    except (RedisError, OSError):
        metrics.redis_unreachable()
        return
    depth, delivery = status.depth, status.delivery
    metrics.set_queue(
        stream_length=depth.stream_length,
        pending=depth.pending,
        retry_scheduled=depth.retry_scheduled,
        dead_letters=depth.dead_letters,
        oldest_entry_age=depth.oldest_entry_age,
        auth_paused=delivery.auth_pause is not None,
        rate_limited={group: wait > 0 for group, wait in delivery.rate_limit_pauses.items()},
        aof_enabled=durability.aof_enabled,
        noeviction=durability.noeviction,
    )
