"""Pacing Close requests across every worker process, through Redis.

- A token bucket per endpoint group with a configurable ceiling (requests per second, all
  workers together), so traffic spikes are smoothed instead of answered with 429s.
- A shared pause per group: when Close answers 429, or says ``remaining=0``, every worker waits
  out the reset Close named before sending to that group again.
- A shared delivery pause when Close refuses the API key (401/403): nothing is sent (and
  nothing is dead-lettered) until a probe request succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

from service.close.ratelimit import parse_ratelimit, wait_after_429
from service.keys import Keys
from service.queue.buckets import take
from service.queue.connection import RedisClient
from service.queue.scripts import Scripts

logger = logging.getLogger(__name__)

GROUPS = ("read", "write", "search")
DEFAULT_429_WAIT = 2.0
AUTH_PAUSE_TTL = 24 * 3600


def endpoint_group(method: str, path: str) -> str:
    """Our endpoint groups: ``search`` (data/search/), ``read`` (GETs), ``write`` (the rest)."""
    path = path.strip("/")
    if "data/search" in path:
        return "search"
    return "read" if method.upper() == "GET" else "write"


class Pacer:
    """Shared limiter, pause and auth state of one Close organisation."""

    def __init__(
        self,
        redis: RedisClient,
        scripts: Scripts,
        keys: Keys,
        *,
        rate: float,
        group_rates: Mapping[str, float] | None = None,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.rates = {group: (group_rates or {}).get(group, rate) for group in GROUPS}

    def pause_key(self, group: str) -> str:
        return self.keys.close(f"pause:{group}")

    async def before(self, group: str) -> None:
        """Wait until this group may be sent one more request (bucket and shared pause)."""
        rate = self.rates.get(group, self.rates["write"])
        while True:
            wait = await take(
                self.scripts,
                self.keys.close(f"bucket:{group}"),
                rate=rate,
                capacity=max(1.0, rate),
                pause_key=self.pause_key(group),
            )
            if wait <= 0:
                return
            await asyncio.sleep(wait + random.uniform(0, 0.05))  # noqa: S311 - jitter

    async def observe(
        self, group: str, status: int, headers: Mapping[str, str], body: bytes = b""
    ) -> float | None:
        """Learn from a response: pause the group on 429 or ``remaining=0``; returns the pause."""
        pause: float | None = None
        if status == 429:
            told = wait_after_429(headers, body)
            pause = DEFAULT_429_WAIT if told is None else told
        else:
            info = parse_ratelimit(headers)
            if info is not None and info.remaining <= 0:
                pause = info.reset
        if pause and pause > 0:
            key = self.pause_key(group)
            millis = int(pause * 1000)
            if await self.redis.pttl(key) < millis:
                await self.redis.set(key, str(status), px=millis)
            logger.info("Close asked to slow down on %s: pausing it %.2fs", group, pause)
        return pause

    async def paused_for(self, group: str) -> float:
        """Seconds the group stays paused (0 when not paused)."""
        millis = await self.redis.pttl(self.pause_key(group))
        return max(0.0, millis / 1000.0)

    # -- the API key --------------------------------------------------------------------------

    async def auth_failed(self, detail: str) -> None:
        await self.redis.set(self.keys.close("auth"), detail, ex=AUTH_PAUSE_TTL)

    async def auth_ok(self) -> None:
        await self.redis.delete(self.keys.close("auth"))

    async def auth_problem(self) -> str | None:
        """Why delivery is paused for the API key, or None when it is not."""
        value = await self.redis.get(self.keys.close("auth"))
        return str(value) if value else None
