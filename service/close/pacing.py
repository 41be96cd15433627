"""Pacing Close requests across every worker process, through Redis.

- A token bucket per endpoint group with a configurable ceiling (requests per second, all
  workers together), so traffic spikes are smoothed instead of answered with 429s.
- A shared pause per group: when Close answers 429, or says ``remaining=0``, every worker waits
  out the reset Close named before sending to that group again.
- A shared delivery pause when Close refuses the API key (401/403): nothing is sent (and
  nothing is dead-lettered) until a probe request succeeds.

Tokens are taken several at a time, so that a busy process does not pay a Redis round trip per
request. Per process and group, one task at a time asks the shared bucket (the others queue
behind it, in order) for as many tokens as there are requests waiting, plus, when this process
sends to the group often, a few for the next ones. Those extra tokens are kept at most
``LEASE`` seconds and then dropped, and there are never more of them than the bucket refills in
one lease (``rate * LEASE``, at most ``MAX_BATCH``): no process hoards the organisation's limit.

Why the limit still holds: a token is spent at most ``LEASE`` after it left the bucket, so the
requests sent in any window of ``W`` seconds took their tokens within ``W + LEASE`` seconds,
which a bucket of capacity ``C`` allows ``C + rate * (W + LEASE)`` of. When extra tokens are
taken at all, the bucket's capacity is ``rate * LEASE`` smaller than Close's (``rate``, one
second's worth), so the requests sent stay within Close's ``rate + rate * W``. At rates below
``1 / LEASE`` per second no extra token is ever taken: every token is spent as it is taken.

A pause (429, ``remaining=0``) empties this process's extra tokens at once and every process's
within ``LEASE``; a request that already held its token when the pause began goes out, as a
request already on the wire would.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.close.ratelimit import RateLimitInfo, parse_ratelimit, wait_after_429
from service.keys import Keys
from service.queue import buckets
from service.queue.connection import RedisClient

logger = logging.getLogger(__name__)

GROUPS = ("read", "write", "activity", "task", "opportunity", "sequence", "search")
"""Our endpoint groups (``endpoint_group``), each with its own bucket and pause."""
_WRITES = {
    "activity": "activity",
    "task": "task",
    "opportunity": "opportunity",
    "sequence_subscription": "sequence",
}
DEFAULT_429_WAIT = 2.0
AUTH_PAUSE_TTL = 24 * 3600
LEASE = 0.05
"""Seconds a process may keep tokens it took ahead of its requests."""
MAX_BATCH = 32
"""Most tokens a process takes ahead of its requests."""


@dataclass(slots=True)
class _Reservoir:
    """One process's tokens of one group, and who is waiting for them."""

    ahead: int
    """Most tokens to take ahead of requests: ``rate * LEASE``, at most ``MAX_BATCH``."""
    capacity: float
    tokens: int = 0
    expires: float = 0.0
    waiting: int = 0
    calls: int = 0
    """Requests since the last refill (how often this process sends to the group)."""
    refilled_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take(self) -> bool:
        if self.tokens > 0:
            if time.monotonic() < self.expires:
                self.tokens -= 1
                return True
            self.tokens = 0  # kept too long: dropped
        return False


def pause_key(keys: Keys, group: str) -> str:
    """Set while every worker waits for Close's rate limit of ``group``."""
    return keys.close(f"pause:{group}")


def auth_key(keys: Keys) -> str:
    """Set (to the reason) while Close refuses the API key: delivery is paused."""
    return keys.close("auth")


def bucket_key(keys: Keys, group: str) -> str:
    return keys.close(f"bucket:{group}")


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Whether delivery to Close is paused, as every worker sees it."""

    auth_pause: str | None
    """Why delivery is paused for Close's API key, or None."""
    rate_limit_pauses: dict[str, float]
    """Seconds each endpoint group still waits for Close's rate limit (0: not paused)."""

    @property
    def status(self) -> str:
        """``paused`` (API key refused), ``rate-limited`` (a group waits) or ``running``."""
        if self.auth_pause:
            return "paused"
        return "rate-limited" if any(self.rate_limit_pauses.values()) else "running"


async def delivery_state(redis: RedisClient, keys: Keys) -> DeliveryState:
    """The shared pauses, read in one pipelined round trip."""
    pipe = redis.pipeline(transaction=False)
    pipe.get(auth_key(keys))
    for group in GROUPS:
        pipe.pttl(pause_key(keys, group))
    auth, *pauses = await pipe.execute()
    return DeliveryState(
        auth_pause=str(auth) if auth else None,
        rate_limit_pauses={
            group: round(max(0, int(ms)) / 1000.0, 3)
            for group, ms in zip(GROUPS, pauses, strict=True)
        },
    )


def endpoint_group(method: str, path: str) -> str:
    """Our endpoint groups: ``search`` (data/search/), ``read`` (GETs), and the writes:
    ``activity`` (notes, custom activities), ``task``, ``opportunity``, ``sequence``
    (subscriptions) and ``write`` (the others: leads, contacts).

    Close limits each of its endpoint groups separately and does not publish them; its docs name
    lead reads and activity writes as separate groups, and recorded answers show other limits for
    task and opportunity writes (close-api-actions.md §12), so a lead's create and its follow-ups
    are paced apart. A guess that is too fine costs nothing more than a 429 and the shared pause."""
    path = path.strip("/")
    if "data/search" in path:
        return "search"
    if method.upper() == "GET":
        return "read"
    segments = path.split("/")
    return next((group for name, group in _WRITES.items() if name in segments), "write")


class Pacer:
    """Shared limiter, pause and auth state of one Close organisation."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        *,
        rate: float,
        group_rates: Mapping[str, float] | None = None,
    ) -> None:
        self.redis = redis
        self._take = buckets.TAKE.bind(redis)
        self.keys = keys
        self.rates = {group: (group_rates or {}).get(group, rate) for group in GROUPS}
        self._reservoirs: dict[str, _Reservoir] = {}

    def pause_key(self, group: str) -> str:
        return pause_key(self.keys, group)

    def _reservoir(self, group: str) -> _Reservoir:
        reservoir = self._reservoirs.get(group)
        if reservoir is None:
            rate = self.rates.get(group, self.rates["write"])
            ahead = min(MAX_BATCH, int(rate * LEASE))
            capacity = max(1.0, rate - (rate * LEASE if ahead else 0.0))
            reservoir = _Reservoir(ahead=ahead, capacity=capacity, refilled_at=time.monotonic())
            self._reservoirs[group] = reservoir
        return reservoir

    async def before(self, group: str) -> None:
        """Wait until this group may be sent one more request (bucket and shared pause)."""
        reservoir = self._reservoir(group)
        reservoir.calls += 1
        if reservoir.take():
            return
        reservoir.waiting += 1
        try:
            async with reservoir.lock:  # one asks Redis; the others queue behind it
                while not reservoir.take():
                    await self._refill(group, reservoir)
        finally:
            reservoir.waiting -= 1

    async def _refill(self, group: str, reservoir: _Reservoir) -> None:
        """Take tokens for the waiting requests (and some ahead), or sleep until there are."""
        started = time.monotonic()
        want = reservoir.waiting
        if reservoir.ahead:
            # As many as this process asked for in the last lease (per second, over at least
            # one lease: a first burst does not count as a high rate).
            per_second = reservoir.calls / max(LEASE, started - reservoir.refilled_at)
            want += min(reservoir.ahead, int(per_second * LEASE))
        reservoir.calls = 0
        reservoir.refilled_at = started
        rate = self.rates.get(group, self.rates["write"])
        reply: Any = await self._take(
            buckets.BucketKeys(bucket_key(self.keys, group), self.pause_key(group)),
            buckets.BucketArgs(buckets.now_ms(), rate, reservoir.capacity, 1, max(1, want)),
        )
        taken, wait_ms = int(reply[0]), int(reply[1])
        if taken > 0:
            reservoir.tokens = taken
            reservoir.expires = started + LEASE
            return
        await asyncio.sleep(wait_ms / 1000 + random.uniform(0, 0.05))  # noqa: S311 - jitter

    def drop_tokens(self, group: str) -> None:
        """Forget the tokens this process took ahead for ``group`` (Close said stop)."""
        reservoir = self._reservoirs.get(group)
        if reservoir is not None:
            reservoir.tokens = 0

    async def observe(
        self,
        group: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes = b"",
        info: RateLimitInfo | None = None,
    ) -> float | None:
        """Learn from a response: pause the group on 429 or ``remaining=0``; returns the pause.

        ``info``: the response's rate-limit header, when the caller parsed it already."""
        pause: float | None = None
        if status == 429:
            told = wait_after_429(headers, body)
            pause = DEFAULT_429_WAIT if told is None else told
        else:
            if info is None:
                info = parse_ratelimit(headers)
            if info is not None and info.remaining <= 0:
                pause = info.reset
        if pause and pause > 0:
            self.drop_tokens(group)
            key = self.pause_key(group)
            millis = int(pause * 1000)
            if await self.redis.pttl(key) < millis:
                await self.redis.set(key, str(status), px=millis)
            logger.info("Close asked to slow down on %s: pausing it %.2fs", group, pause)
        return pause

    # -- the API key --------------------------------------------------------------------------

    async def auth_failed(self, detail: str) -> None:
        await self.redis.set(auth_key(self.keys), detail, ex=AUTH_PAUSE_TTL)

    async def auth_ok(self) -> None:
        await self.redis.delete(auth_key(self.keys))

    async def auth_problem(self) -> str | None:
        """Why delivery is paused for the API key, or None when it is not."""
        value = await self.redis.get(auth_key(self.keys))
        return str(value) if value else None
