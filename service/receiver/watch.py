"""The receiver's watch on Redis: its data marker and its persistence, checked at start and
every ``redis_watch_seconds``, and what follows from them.

- The marker (``queue/marker.py``): Redis back without its data is logged CRITICAL once,
  counted (``intake_redis_data_losses_total``), and shown by readiness, the dashboard and the
  admin API as ``data_lost_at``.
- Persistence: in production a Redis that keeps nothing across a restart (AOF off, no
  snapshots) makes the door answer 503 instead of accepting what it would lose, and readiness
  fail with the reason, unless ``allow_volatile_redis`` is set.

The door itself never waits for these checks: it reads the last result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from redis.exceptions import RedisError

from service.config.settings import Settings
from service.metrics import Metrics
from service.queue import Queue
from service.queue.connection import without_persistence

logger = logging.getLogger(__name__)

VOLATILE = (
    "Redis has no persistence (AOF off, no snapshots): a restart would lose what the door "
    "accepted, so it accepts nothing; turn on appendonly, or set INTAKE_ALLOW_VOLATILE_REDIS"
)


@dataclass(slots=True)
class RedisWatch:
    """The last check's findings, for readiness and the door."""

    settings: Settings
    metrics: Metrics
    volatile: bool | None = None
    """None until Redis answered once."""

    @property
    def refusal(self) -> str | None:
        """Why the door stores nothing now, or None."""
        settings = self.settings
        if self.volatile and settings.env == "production" and not settings.allow_volatile_redis:
            return VOLATILE
        return None

    async def check(self, queue: Queue) -> None:
        """One look at Redis (raises RedisError when it cannot be reached)."""
        await queue.stream.ensure_group()  # the marker: logs and counts a loss
        volatile = await without_persistence(queue.redis)
        if volatile != self.volatile and volatile:
            logger.warning("Redis has no persistence (AOF off, no snapshots)")
        self.volatile = volatile
        self.metrics.redis_volatile.set(1 if volatile else 0)
        loss = await queue.marker.last_loss()
        self.metrics.redis_data_lost_at.set(loss.at if loss else 0)
        refusal = self.refusal
        if refusal != queue.intake.refusal:
            if refusal:
                logger.error("the door refuses submissions (503): %s", refusal)
            else:
                logger.info("the door accepts submissions again")
        queue.intake.refusal = refusal


WATCH = web.AppKey("redis_watch", RedisWatch)


def watch(queue: Queue, settings: Settings, metrics: Metrics) -> RedisWatch:
    """The watch of ``queue``, its losses counted in ``metrics``."""
    queue.marker.on_loss = lambda _loss: metrics.redis_data_losses.inc()
    return RedisWatch(settings, metrics)


@contextlib.asynccontextmanager
async def watching(watcher: RedisWatch, queue: Queue) -> AsyncIterator[None]:
    """Check once now, then every ``redis_watch_seconds`` until the block ends."""

    async def look(first: bool) -> bool:
        try:
            await watcher.check(queue)
        except (RedisError, OSError) as exc:
            if first:  # said once per outage; the requests answer 503 meanwhile
                when = "at start" if watcher.volatile is None else "now"
                logger.warning(
                    "Redis not reachable %s (%s); answering 503 until it is",
                    when,
                    type(exc).__name__,
                )
            return False
        return True

    async def loop(reachable: bool) -> None:
        while True:
            await asyncio.sleep(watcher.settings.redis_watch_seconds)
            reachable = await look(first=reachable)

    task = asyncio.create_task(loop(await look(first=True)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
