"""The work stream and its consumer group: reading, taking over and handing back entries, the
retry schedule's return into the stream, and the queue's depth.

A submission is one stream entry (``sub``, ``source``) plus its record hash. Entries are read
through one consumer group; an entry is acknowledged and deleted by the same script that records
its outcome (``queue/transitions.py``), so it leaves the stream only once its outcome is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from service.keys import GROUP, Keys
from service.queue.connection import RedisClient
from service.queue.lua import Script
from service.queue.marker import DataMarker

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry handed to a worker."""

    entry_id: str
    sub_id: str
    source: str


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """The shared state of the queue, as the metrics and the admin show it."""

    stream_length: int
    pending: int
    retry_scheduled: int
    dead_letters: int
    oldest_entry_age: float = 0.0
    """Seconds since the oldest entry still in the stream (waiting or in work) was added: 0
    when the stream is empty. A retry's age starts again when it comes back into the stream."""


@dataclass(frozen=True, slots=True)
class _MoveKeys:
    retry: str
    stream: str


@dataclass(frozen=True, slots=True)
class _MoveArgs:
    now: float
    limit: int


# Safe to run from every worker at once: a member is re-queued only by the caller whose ZREM
# removed it. A member is ``<submission id>|<source>``. Returns the number moved.
_MOVE_DUE = Script(
    _MoveKeys,
    _MoveArgs,
    """
local due = redis.call('ZRANGEBYSCORE', K.retry, '-inf', A.now, 'LIMIT', 0, tonumber(A.limit))
local moved = 0
for _, member in ipairs(due) do
  if redis.call('ZREM', K.retry, member) == 1 then
    local sep = string.find(member, '|', 1, true)
    local id, source = member, ''
    if sep then id = string.sub(member, 1, sep - 1); source = string.sub(member, sep + 1) end
    redis.call('XADD', K.stream, '*', 'sub', id, 'source', source)
    moved = moved + 1
  end
end
return moved
""",
)


def retry_member(sub_id: str, source: str) -> str:
    """A submission's member of the retry schedule (the source goes back into the entry)."""
    return f"{sub_id}|{source}"


def _is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


class WorkStream:
    """The stream, its consumer group and the retry schedule."""

    def __init__(self, redis: RedisClient, keys: Keys, marker: DataMarker) -> None:
        self.redis = redis
        self.keys = keys
        self.marker = marker
        self._move_due = _MOVE_DUE.bind(redis)

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group if missing, with the data marker, and
        find out whether Redis lost the data (``marker.py``)."""
        await self.marker.ensure()

    async def group_exists(self) -> bool:
        try:
            groups = await self.redis.xinfo_groups(self.keys.stream)
        except ResponseError:
            return False  # no such stream
        return any(g.get("name") == GROUP for g in groups)

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """New entries for this consumer (XREADGROUP ... >), waiting up to ``block_ms``."""
        try:
            reply: Any = await self.redis.xreadgroup(
                GROUP, consumer, {self.keys.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
            logger.warning("consumer group missing; recreating it")
            await self.ensure_group()
            return []
        entries: list[Entry] = []
        for _stream, messages in reply or []:
            entries.extend(_entries(messages))
        return entries

    async def autoclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries other consumers left idle longer than ``min_idle_ms``."""
        try:
            reply = await self.redis.xautoclaim(
                self.keys.stream,
                GROUP,
                consumer,
                min_idle_time=min_idle_ms,
                start_id="0-0",
                count=count,
            )
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
            await self.ensure_group()
            return []
        messages = reply[1] if len(reply) > 1 else []
        deleted: Sequence[str] = reply[2] if len(reply) > 2 else []
        if deleted:
            # Entries deleted from the stream but still pending: nothing left to do for them.
            await self.redis.xack(self.keys.stream, GROUP, *deleted)
        return _entries(messages)

    async def touch(self, consumer: str, entry_ids: Sequence[str], idle_ms: int = 0) -> None:
        """Set how long this consumer's entries count as idle: 0 while they are being worked on
        (nobody reclaims them), the visibility timeout to hand them back (reclaimed at once)."""
        if entry_ids:
            await self.redis.xclaim(
                self.keys.stream,
                GROUP,
                consumer,
                min_idle_time=0,
                message_ids=list(entry_ids),
                idle=idle_ms,
                justid=True,
            )

    async def deliveries(self, entry: Entry) -> int:
        """How many times the entry was handed to a consumer (XPENDING's delivery count)."""
        rows: Any = await self.redis.xpending_range(
            self.keys.stream, GROUP, min=entry.entry_id, max=entry.entry_id, count=1
        )
        return int(rows[0]["times_delivered"]) if rows else 0

    async def move_due(self, now: float | None = None, limit: int = 100) -> int:
        """Put retries whose time has come back into the stream; returns how many moved."""
        now = time.time() if now is None else now
        moved = await self._move_due(
            _MoveKeys(self.keys.retry, self.keys.stream), _MoveArgs(now, limit)
        )
        return int(moved)

    async def depth(self) -> QueueDepth:
        """Stream length, pending, retry-scheduled and dead counts and the oldest entry in one
        pipelined round trip (plus one XPENDING when the stream holds entries)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.stream)
        pipe.zcard(self.keys.retry)
        pipe.xlen(self.keys.dead)
        pipe.xrange(self.keys.stream, count=1)
        stream_length, retry, dead, oldest = await pipe.execute()
        pending = 0
        if stream_length:
            try:
                summary: Any = await self.redis.xpending(self.keys.stream, GROUP)
                pending = int(summary.get("pending") or 0)
            except ResponseError:  # no consumer group yet: nothing is pending
                pending = 0
        return QueueDepth(
            stream_length=int(stream_length),
            pending=pending,
            retry_scheduled=int(retry),
            dead_letters=int(dead),
            oldest_entry_age=_age(oldest[0][0]) if oldest else 0.0,
        )


def _age(entry_id: str) -> float:
    """Seconds since an entry id's time (``<milliseconds>-<sequence>``, Redis's clock)."""
    millis = int(str(entry_id).partition("-")[0])
    return max(0.0, time.time() - millis / 1000)


def _entries(messages: Sequence[Any]) -> list[Entry]:
    out = []
    for entry_id, fields in messages:
        if fields is None:
            continue
        out.append(Entry(str(entry_id), str(fields.get("sub", "")), str(fields.get("source", ""))))
    return out
