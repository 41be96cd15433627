"""Hydration's shared state in Redis, per source, seen by every worker (and the receiver's
readiness): the provider refused the token (delivery paused), the provider's rate limit
(fetches paused), and who tries a refused token again (one probe per interval)."""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import RedisError

from service.keys import Keys
from service.metrics import Metrics
from service.queue.connection import RedisClient

AUTH_PAUSE_TTL = 24 * 3600
"""A refused token's pause lasts at most this long without a probe renewing it."""


class ProviderPauses:
    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def _key(self, kind: str, source: str) -> str:
        return self.keys.provider(f"{kind}:{source}")

    async def auth_problem(self, source: str) -> str | None:
        """Why the source's delivery is paused (its token is refused), or None."""
        value = await self.redis.get(self._key("auth", source))
        return str(value) if value else None

    async def auth_failed(self, source: str, detail: str) -> None:
        await self.redis.set(self._key("auth", source), detail, ex=AUTH_PAUSE_TTL)

    async def auth_ok(self, source: str) -> bool:
        """Reopen the source; True when it was paused."""
        return bool(await self.redis.delete(self._key("auth", source)))

    async def take_probe(self, source: str, seconds: float) -> bool:
        """True for the one caller per ``seconds`` that may try a refused token again."""
        taken = await self.redis.set(
            self._key("probe", source), "1", px=max(1, int(seconds * 1000)), nx=True
        )
        return bool(taken)

    async def rate_wait(self, source: str) -> float:
        """Seconds the source's fetches still wait for the provider's rate limit (0: none)."""
        millis = int(await self.redis.pttl(self._key("pause", source)))
        return max(0, millis) / 1000.0

    async def pause_fetches(self, source: str, seconds: float) -> None:
        """Pause the source's fetches for ``seconds`` (a longer pause already set is kept)."""
        key = self._key("pause", source)
        millis = max(1, int(seconds * 1000))
        if int(await self.redis.pttl(key)) < millis:
            await self.redis.set(key, "1", px=millis)

    async def paused(self, sources: Sequence[str]) -> dict[str, str]:
        """The sources whose delivery is paused now, with why (one round trip)."""
        if not sources:
            return {}
        values = await self.redis.mget([self._key("auth", s) for s in sources])
        return {s: str(v) for s, v in zip(sources, values, strict=True) if v}


async def refresh_hydration_metrics(
    metrics: Metrics, redis: RedisClient, keys: Keys, sources: Sequence[str]
) -> None:
    """``intake_delivery_paused{reason="hydration:<source>"}`` from Redis, at scrape time."""
    if not sources:
        return
    try:
        paused = await ProviderPauses(redis, keys).paused(sources)
    except (RedisError, OSError):
        return  # redis_up says so already
    metrics.set_hydration_paused({source: source in paused for source in sources})
