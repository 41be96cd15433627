"""Who a submission is: identity keys, a lock per person, and the person → lead cache.

Identity keys are hashes of the normalised email and E.164 phone (personal data never appears in
Redis key names). Holding the locks of all of a submission's keys serialises the submissions of
one person across every worker; the cache, written right after a create, bridges Close's
search-index lag so the next submission of that person finds the lead.

All of a person's locks are taken in one script (all or none, so no deadlock and nothing held
while waiting), which also reads the person's cached lead and create marks as they are under the
locks; they are released in one script, usually the one that records the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from service.errors import TransientError
from service.keys import Keys
from service.keys import identity_keys as person_keys
from service.mapping import Identity
from service.queue.connection import RedisClient
from service.queue.lua import Script

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _PersonKeys:
    """No named keys: the person's locks, then their lead cache keys, then their create marks,
    ``n`` of each in the same order, follow."""


@dataclass(frozen=True, slots=True)
class _TakeArgs:
    token: str
    ttl_ms: int
    n: int


# All of one person's locks at once, or none. With them, what the worker needs to know about
# the person, as it is while the locks are held. Returns {0} when another holder has one of the
# locks (nothing taken), else {1, cached lead id or '' (n of them), then per mark: its owner or
# '', milliseconds left}.
_TAKE_LOCKS = Script(
    _PersonKeys,
    _TakeArgs,
    """
local n = tonumber(A.n)
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {0} end
end
for i = 1, n do redis.call('SET', KEYS[i], A.token, 'PX', tonumber(A.ttl_ms)) end
local out = {1}
for i = 1, n do out[#out + 1] = redis.call('GET', KEYS[n + i]) or '' end
for i = 1, n do
  local owner = redis.call('GET', KEYS[2 * n + i])
  if owner then
    out[#out + 1] = owner
    out[#out + 1] = redis.call('PTTL', KEYS[2 * n + i])
  else
    out[#out + 1] = ''
    out[#out + 1] = 0
  end
end
return out
""",
)


@dataclass(frozen=True, slots=True)
class _LockKeys:
    """No named keys: the locks follow."""


@dataclass(frozen=True, slots=True)
class _TokenArgs:
    token: str


@dataclass(frozen=True, slots=True)
class _ExtendArgs:
    token: str
    ttl_ms: int


# Release the locks this holder still owns (its token); returns how many were released.
_RELEASE_LOCKS = Script(
    _LockKeys,
    _TokenArgs,
    """
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == A.token then released = released + redis.call('DEL', KEYS[i]) end
end
return released
""",
)

# Extend the locks this holder still owns; returns how many were extended.
_EXTEND_LOCKS = Script(
    _LockKeys,
    _ExtendArgs,
    """
local extended = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == A.token then
    extended = extended + redis.call('PEXPIRE', KEYS[i], tonumber(A.ttl_ms))
  end
end
return extended
""",
)


class IdentityBusy(TransientError):
    """Another worker holds this person's lock for longer than we are willing to wait."""


def identity_keys(identity: Identity) -> list[str]:
    """Stable, sorted keys for a person: ``e:<hash of email>``, ``p:<hash of phone>``."""
    return person_keys(identity.email, identity.phone)


@dataclass(slots=True)
class Held:
    """A person's locks, held, and what Redis knew about the person when they were taken.

    Nobody else writes a person's lead cache or create marks without holding the person's
    locks, so these stay true while the locks are held (a mark can only expire meanwhile).
    """

    identities: tuple[str, ...]
    token: str
    cached_lead: str | None = None
    """The lead id the cache holds for the person (first identity that has one), or None."""
    cached_leads: tuple[str, ...] = ()
    """The cached lead of each of ``identities`` ('' where none): two different ones are an
    identity link (``worker/links.py``)."""
    creating: tuple[str, float] | None = None
    """``(submission id, seconds left)`` of a create whose outcome is unknown, or None."""
    released: bool = False
    """Set once a state change released the locks with the token (nothing left to release)."""
    _marks_at: float = field(default=0.0, repr=False)

    def creating_now(self) -> tuple[str, float] | None:
        """``creating`` with the seconds left counted down to now (None once it expired)."""
        if self.creating is None:
            return None
        left = self.creating[1] - (time.monotonic() - self._marks_at)
        return (self.creating[0], left) if left > 0 else None


class IdentityLocks:
    """One Redis lock per identity key, with expiry, refresh while held, and safe release."""

    def __init__(self, redis: RedisClient, keys: Keys, *, ttl: float, wait: float) -> None:
        self._take = _TAKE_LOCKS.bind(redis)
        self._release = _RELEASE_LOCKS.bind(redis)
        self._extend = _EXTEND_LOCKS.bind(redis)
        self.keys = keys
        self.ttl_ms = int(ttl * 1000)
        self.wait = wait

    @asynccontextmanager
    async def hold(self, identities: Sequence[str]) -> AsyncIterator[Held]:
        """Hold the locks of all ``identities`` (all taken at once, or none)."""
        ordered = tuple(sorted(identities))
        # A holder's token only has to differ from every other holder's (it is no secret):
        # 96 random bits, without a system call per submission.
        held = Held(ordered, f"{random.getrandbits(96):024x}")
        if not ordered:
            yield held
            return
        names = [self.keys.lock(identity) for identity in ordered]
        await self._acquire(held, names)
        refresher = _Refresher(self, names, held.token)
        try:
            yield held
        finally:
            try:
                await refresher.stop()
            finally:
                if not held.released:
                    await self.release(names, held.token)

    async def extend(self, names: Sequence[str], token: str) -> int:
        """Extend the locks ``names`` where they still hold ``token``; how many were."""
        return int(await self._extend(_LockKeys(), _ExtendArgs(token, self.ttl_ms), names))

    async def release(self, names: Sequence[str], token: str) -> int:
        """Release the locks ``names`` where they still hold ``token``; how many were."""
        return int(await self._release(_LockKeys(), _TokenArgs(token), names))

    async def try_take(self, identities: Sequence[str]) -> str | None:
        """Take the locks of ``identities`` once, without waiting: their token, or None when
        another holder has one of them (nothing taken). Released with :meth:`release`."""
        ordered = sorted(identities)
        token = f"{random.getrandbits(96):024x}"
        keys = [
            *(self.keys.lock(i) for i in ordered),
            *(self.keys.lead(i) for i in ordered),
            *(self.keys.creating(i) for i in ordered),
        ]
        reply: Any = await self._take(
            _PersonKeys(), _TakeArgs(token, self.ttl_ms, len(ordered)), keys
        )
        return token if int(reply[0]) else None

    async def _acquire(self, held: Held, names: list[str]) -> None:
        keys = [
            *names,
            *(self.keys.lead(i) for i in held.identities),
            *(self.keys.creating(i) for i in held.identities),
        ]
        args = _TakeArgs(held.token, self.ttl_ms, len(names))
        deadline = time.monotonic() + self.wait
        delay = 0.01
        while True:
            reply: Any = await self._take(_PersonKeys(), args, keys)
            if int(reply[0]):
                break
            if time.monotonic() >= deadline:
                raise IdentityBusy("this person's previous submission is still being processed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        n = len(names)
        held.cached_leads = tuple(str(v or "") for v in reply[1 : n + 1])
        held.cached_lead = next((v for v in held.cached_leads if v), None)
        held._marks_at = time.monotonic()
        marks = reply[n + 1 :]
        for owner, millis in zip(marks[::2], marks[1::2], strict=True):
            if owner and int(millis) > 0:
                held.creating = (str(owner), int(millis) / 1000)
                break


class _Refresher:
    """Extends a holder's locks every third of their ttl while they are held.

    Nothing runs until the first third has passed (most submissions are done by then): a timer,
    then one task per round. A round that fails on Redis (restarting, say) is logged and the next
    one is scheduled all the same: the locks still have two thirds of their ttl, and a refresher
    that gave up after one error would let them expire under a holder still at work, so another
    worker could take the person and run the same follow-up beside it. Stopping cancels the
    timer and any round in flight, and waits for that round a bounded time: a cancellation can
    get lost inside a Redis call (Python 3.11's ``wait_for``, which redis-py uses, may swallow
    one), so a round also checks ``stopped`` before scheduling the next one, and a lock is never
    held on forever because one cancellation went missing.
    """

    def __init__(self, locks: IdentityLocks, names: list[str], token: str) -> None:
        self.locks = locks
        self.names = names
        self.token = token
        self.every = locks.ttl_ms / 3000
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(self.every, self._due)

    def _due(self) -> None:
        if not self.stopped:
            self.task = asyncio.get_running_loop().create_task(self._round())

    async def _round(self) -> None:
        # How many it extended says little: the outcome's script may have released the locks
        # while this round was on its way, so a short count is no sign of an expired lock.
        try:
            await self.locks.extend(self.names, self.token)
        except (RedisError, OSError) as exc:
            logger.warning("refreshing a person's lock failed, trying again: %r", exc)
        if not self.stopped:
            self.timer = asyncio.get_running_loop().call_later(self.every, self._due)

    async def stop(self) -> None:
        self.stopped = True
        self.timer.cancel()
        task = self.task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=self.locks.ttl_ms / 1000)
        if not task.done():
            logger.warning("a lock refresher did not stop in time; it stops at its next round")


class LeadCache:
    """identity key → lead id, written after a create (or a match), kept ``ttl`` seconds.

    The worker reads it with the person's locks (:class:`Held`) and writes it with the state
    change that goes with it (``PersonUpdate`` in ``service/queue/transitions.py``); the methods
    here are the two clean-ups done on their own.
    """

    def __init__(self, redis: RedisClient, keys: Keys, *, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl

    async def forget(self, identities: Sequence[str]) -> None:
        if identities:
            await self.redis.delete(*(self.keys.lead(i) for i in identities))

    async def clear_creating(self, identities: Sequence[str]) -> None:
        """The create's outcome is known (made, or surely not sent): nothing to wait for."""
        if identities:
            await self.redis.delete(*(self.keys.creating(i) for i in identities))
