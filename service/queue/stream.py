"""The work queue: enqueue at the door, read/claim/finish in the worker, all through Redis.

A submission is one stream entry (``sub``, ``source``) plus its record hash. Entries are read
through one consumer group; an entry is acknowledged and deleted in the same script that records
its outcome, so an entry leaves the stream only once its outcome is safe in the record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from service.envelope import Envelope
from service.keys import GROUP, Keys
from service.queue.records import SubmissionRecord, encode_fields, history_event
from service.queue.scripts import Scripts

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """What identifies one delivery: ``kind`` says where it came from (``idempotency-key``,
    ``webhook-id``, ``event-id``, ``body-hash``), ``digest`` is the hashed value, ``ttl`` how
    long a repeat is recognised."""

    kind: str
    digest: str
    ttl: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry handed to a worker."""

    entry_id: str
    sub_id: str
    source: str


def _is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


class WorkQueue:
    """Stream, consumer group, retry schedule and records under one key prefix."""

    def __init__(self, redis: Redis, keys: Keys, *, record_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.record_ttl = record_ttl
        self.scripts = Scripts.register(redis)

    # -- setup and health -------------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group; an existing group (BUSYGROUP) is fine."""
        try:
            await self.redis.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def group_exists(self) -> bool:
        try:
            groups = await self.redis.xinfo_groups(self.keys.stream)
        except ResponseError:
            return False  # no such stream
        return any(g.get("name") == GROUP for g in groups)

    # -- the door ---------------------------------------------------------------------------

    async def enqueue(
        self, envelope: Envelope, delivery: DeliveryKey | None = None
    ) -> tuple[str, bool]:
        """Store the record and add the stream entry in one atomic step.

        Returns ``(submission id, True)`` when queued, or ``(first submission's id, False)`` when
        ``delivery`` names a delivery already accepted within its window (nothing is stored).
        """
        event = history_event(envelope.received_at, "queued")
        idem_key = self.keys.idem(envelope.source, delivery.digest if delivery else "-")
        queued, value = await self.scripts.enqueue(
            keys=[self.keys.stream, self.keys.sub(envelope.id), idem_key],
            args=[
                envelope.id,
                envelope.source,
                envelope.to_json(),
                repr(envelope.received_at),
                self.record_ttl,
                event,
                delivery.ttl if delivery else "",
                delivery.kind if delivery else "",
            ],
        )
        return (envelope.id, True) if int(queued) else (str(value), False)

    # -- the worker side --------------------------------------------------------------------

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """New entries for this consumer (XREADGROUP ... >), waiting up to ``block_ms``."""
        try:
            reply: Any = await self.redis.xreadgroup(
                GROUP, consumer, {self.keys.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
            logger.warning("consumer group missing (Redis restarted without data?); recreating")
            await self.ensure_group()
            return []
        entries: list[Entry] = []
        for _stream, messages in reply or []:
            entries.extend(self._entries(messages))
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
        return self._entries(messages)

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries still being worked on, so nobody reclaims them."""
        if entry_ids:
            await self.redis.xclaim(
                self.keys.stream,
                GROUP,
                consumer,
                min_idle_time=0,
                message_ids=list(entry_ids),
                justid=True,
            )

    def _entries(self, messages: Sequence[Any]) -> list[Entry]:
        out = []
        for entry_id, fields in messages:
            if fields is None:
                continue
            out.append(
                Entry(str(entry_id), str(fields.get("sub", "")), str(fields.get("source", "")))
            )
        return out

    async def transition(
        self,
        sub_id: str,
        state: str,
        *,
        detail: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        ack: Entry | None = None,
        retry_at: float | None = None,
        dead: bool = False,
        source: str = "",
        count_attempt: bool = False,
        attempts_delta: int = 0,
        now: float | None = None,
    ) -> int:
        """Record a state change; optionally ack+delete the entry, schedule a retry, dead-letter.

        Returns the record's attempt count (after ``count_attempt``), or -1 when the record no
        longer exists (expired or erased); the entry is still acknowledged then, so it does not
        come back.
        """
        now = time.time() if now is None else now
        pairs = encode_fields({"updated_at": repr(now), **(fields or {})})
        dead_minid = ""
        if dead:
            dead_minid = f"{int((now - self.record_ttl) * 1000)}-0"
        result = await self.scripts.transition(
            keys=[self.keys.sub(sub_id), self.keys.stream, self.keys.retry, self.keys.dead],
            args=[
                state,
                history_event(now, state, detail),
                self.record_ttl,
                GROUP if ack else "",
                ack.entry_id if ack else "",
                repr(retry_at) if retry_at is not None else "",
                f"{sub_id}|{source}" if retry_at is not None else sub_id,
                dead_minid,
                source,
                attempts_delta + (1 if count_attempt else 0),
                len(pairs) // 2,
                *pairs,
            ],
        )
        return int(result)

    async def move_due(self, now: float | None = None, limit: int = 100) -> int:
        """Put retries whose time has come back into the stream; returns how many moved."""
        now = time.time() if now is None else now
        return int(
            await self.scripts.move_due(
                keys=[self.keys.retry, self.keys.stream], args=[repr(now), limit]
            )
        )

    async def record(self, sub_id: str) -> SubmissionRecord | None:
        raw: dict[str, str] = await self.redis.hgetall(self.keys.sub(sub_id))  # type: ignore[assignment]
        return SubmissionRecord.from_hash(raw) if raw else None


__all__ = ["Entry", "RedisError", "WorkQueue"]
