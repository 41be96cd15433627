"""Who a submission is: identity keys, a lock per person, and the person → lead cache.

Identity keys are hashes of the normalised email and E.164 phone (personal data never appears in
Redis key names). Holding the locks of all of a submission's keys serialises the submissions of
one person across every worker; the cache, written right after a create, bridges Close's
search-index lag so the next submission of that person finds the lead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

from service.errors import TransientError
from service.keys import Keys
from service.mapping import Identity
from service.queue.connection import RedisClient
from service.queue.scripts import Scripts

logger = logging.getLogger(__name__)


class IdentityBusy(TransientError):
    """Another worker holds this person's lock for longer than we are willing to wait."""


def identity_keys(identity: Identity) -> list[str]:
    """Stable, sorted keys for a person: ``e:<hash of email>``, ``p:<hash of phone>``."""
    keys = []
    if identity.email:
        keys.append("e:" + hashlib.sha256(b"email:" + identity.email.encode()).hexdigest()[:32])
    if identity.phone:
        keys.append("p:" + hashlib.sha256(b"phone:" + identity.phone.encode()).hexdigest()[:32])
    return sorted(keys)


class IdentityLocks:
    """One Redis lock per identity key, with expiry, refresh while held, and safe release."""

    def __init__(
        self, redis: RedisClient, scripts: Scripts, keys: Keys, *, ttl: float, wait: float
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.ttl_ms = int(ttl * 1000)
        self.wait = wait

    @asynccontextmanager
    async def hold(self, identities: Sequence[str]) -> AsyncIterator[None]:
        """Hold the locks of all ``identities`` (taken in sorted order: no deadlock)."""
        token = secrets.token_hex(12)
        names = [self.keys.lock(identity) for identity in sorted(identities)]
        taken: list[str] = []
        try:
            for name in names:
                await self._acquire(name, token)
                taken.append(name)
            done = asyncio.Event()
            refresher = asyncio.create_task(self._refresh(taken, token, done))
            try:
                yield
            finally:
                await self._stop(refresher, done)
        finally:
            for name in reversed(taken):
                await self.scripts.release_lock(keys=[name], args=[token])

    async def _stop(self, refresher: asyncio.Task[None], done: asyncio.Event) -> None:
        """End the refresher. A cancellation can get lost inside a Redis call (Python 3.11's
        ``wait_for``, which redis-py uses, may swallow one), so the refresher also checks
        ``done`` each round, and the wait for it is bounded: a lock is never held on forever
        because one cancellation went missing."""
        done.set()
        refresher.cancel()
        await asyncio.wait({refresher}, timeout=self.ttl_ms / 1000)
        if not refresher.done():
            logger.warning("a lock refresher did not stop in time; it stops at its next round")
        elif not refresher.cancelled() and refresher.exception() is not None:
            logger.warning("refreshing a person's lock failed: %r", refresher.exception())

    async def _acquire(self, name: str, token: str) -> None:
        deadline = time.monotonic() + self.wait
        delay = 0.01
        while True:
            if await self.redis.set(name, token, nx=True, px=self.ttl_ms):
                return
            if time.monotonic() >= deadline:
                raise IdentityBusy("this person's previous submission is still being processed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _refresh(self, names: list[str], token: str, done: asyncio.Event) -> None:
        while not done.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.ttl_ms / 3000)
            for name in names:
                if done.is_set():
                    return
                await self.scripts.extend_lock(keys=[name], args=[token, self.ttl_ms])


class LeadCache:
    """identity key → lead id, written after a create (or a match), kept ``ttl`` seconds."""

    def __init__(self, redis: RedisClient, keys: Keys, *, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl

    async def get(self, identities: Sequence[str]) -> str | None:
        if not identities:
            return None
        values = await self.redis.mget([self.keys.lead(i) for i in identities])
        return next((str(v) for v in values if v), None)

    async def remember(self, identities: Sequence[str], lead_id: str) -> None:
        if identities:
            pipe = self.redis.pipeline(transaction=False)
            for identity in identities:
                pipe.set(self.keys.lead(identity), lead_id, ex=self.ttl)
            await pipe.execute()

    async def forget(self, identities: Sequence[str]) -> None:
        if identities:
            await self.redis.delete(*(self.keys.lead(i) for i in identities))

    async def mark_creating(
        self, identities: Sequence[str], submission_id: str, ttl: float
    ) -> None:
        """Note, before a create is sent, that this person may soon have a lead Close's search
        does not show yet; the mark lasts ``ttl`` seconds unless cleared."""
        if identities and ttl > 0:
            pipe = self.redis.pipeline(transaction=False)
            for identity in identities:
                pipe.set(self.keys.creating(identity), submission_id, px=max(1, int(ttl * 1000)))
            await pipe.execute()

    async def clear_creating(self, identities: Sequence[str]) -> None:
        """The create's outcome is known (made, or surely not sent): nothing to wait for."""
        if identities:
            await self.redis.delete(*(self.keys.creating(i) for i in identities))

    async def creating(self, identities: Sequence[str]) -> tuple[str, float] | None:
        """``(submission id, seconds left)`` of a create of this person whose outcome is
        unknown, or None."""
        if not identities:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.get(self.keys.creating(identity))
            pipe.pttl(self.keys.creating(identity))
        replies = await pipe.execute()
        for owner, millis in zip(replies[::2], replies[1::2], strict=True):
            if owner and int(millis) > 0:
                return str(owner), int(millis) / 1000
        return None
