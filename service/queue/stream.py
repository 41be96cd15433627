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

from redis.exceptions import RedisError, ResponseError

from service.envelope import Envelope
from service.keys import GROUP, Keys
from service.queue.batching import ScriptBatcher
from service.queue.connection import RedisClient
from service.queue.records import (
    FINAL_STATES,
    STATES,
    TERMINAL_STATES,
    SubmissionRecord,
    encode_fields,
    history_event,
    history_event_head,
)
from service.queue.scripts import Scripts

logger = logging.getLogger(__name__)


STATE_NAMES = " ".join(STATES)
"""The state index keys' order, as the scripts receive it."""

# The worker's scripts get their unchanging arguments as bytes: redis-py sends bytes as they are.
_STATE_NAMES_B = STATE_NAMES.encode()
_TERMINAL_NAMES_B = " ".join(sorted(TERMINAL_STATES)).encode()
_GROUP_B = GROUP.encode()


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """What identifies one delivery: ``kind`` says where it came from (``idempotency-key``,
    ``webhook-id``, ``event-id``, ``body-hash``), ``digest`` is the hashed value, ``ttl`` how
    long a repeat is recognised."""

    kind: str
    digest: str
    ttl: int


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """The shared state of the queue and of delivery, as the metrics and the admin show it."""

    stream_length: int
    pending: int
    retry_scheduled: int
    dead_letters: int
    auth_pause: str | None
    """Why delivery is paused for Close's API key, or None."""
    rate_limit_pauses: dict[str, float]
    """Seconds each endpoint group still waits for Close's rate limit (0: not paused)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry handed to a worker."""

    entry_id: str
    sub_id: str
    source: str


@dataclass(frozen=True, slots=True)
class PersonUpdate:
    """What a state change also writes about the person (all of ``identities``), in the same
    script: the lead cache, the "create may have reached Close" marks, the release of the locks.
    """

    identities: Sequence[str]
    cache_lead: str = ""
    """Lead id to remember for the person ('' = leave the cache alone)."""
    cache_ttl: int = 0
    mark_creating: str = ""
    """Submission id whose create is about to be sent ('' = no mark)."""
    mark_ttl: float = 0.0
    """Seconds the mark lasts."""
    clear_creating: bool = False
    """Remove the marks: the create's outcome is known."""
    release_token: str = ""
    """Release the person's locks where they still hold this token ('' = keep them)."""


def _is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


class WorkQueue:
    """Stream, consumer group, retry schedule and records under one key prefix."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.record_ttl = record_ttl
        self.scripts = Scripts.register(redis)
        self._enqueue = ScriptBatcher(redis, self.scripts.enqueue)
        self.rate_bucket = ScriptBatcher(redis, self.scripts.token_bucket)
        """The door's rate-limit buckets (``buckets.take``), group-committed like enqueues."""
        self._state_keys = [keys.state(state) for state in STATES]
        # The keys every state change names after the record's, computed (and encoded) once.
        state_keys = [key.encode() for key in self._state_keys]
        stream = keys.stream.encode()
        self._transition_keys: list[bytes] = [
            stream,
            keys.retry.encode(),
            keys.dead.encode(),
            *state_keys,
        ]
        self._claim_keys: list[bytes] = [stream, *state_keys]
        self._ttl_b = str(record_ttl).encode()

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
        history = history_event(envelope.received_at, "queued")
        return await self._store(envelope, "queued", history, delivery)

    async def store_rejected(
        self, envelope: Envelope, reason: str, delivery: DeliveryKey | None = None
    ) -> tuple[str, bool]:
        """Keep a submission refused at the door (spam) as a ``rejected`` record.

        It is never added to the stream, so no worker sees it and nothing reaches Close; the
        record (with the payload, for review) expires like any other. A repeat of the same
        delivery answers like the first one.
        """
        at = envelope.received_at
        history = "\n".join(
            (history_event(at, "received"), history_event(at, "rejected", {"reason": reason}))
        )
        return await self._store(envelope, "rejected", history, delivery, reason=reason)

    async def _store(
        self,
        envelope: Envelope,
        state: str,
        history: str,
        delivery: DeliveryKey | None,
        *,
        reason: str = "",
    ) -> tuple[str, bool]:
        idem_key = self.keys.idem(envelope.source, delivery.digest if delivery else "-")
        stored, value = await self._enqueue(
            [self.keys.stream, self.keys.sub(envelope.id), idem_key, self.keys.state(state)],
            [
                envelope.id,
                envelope.source,
                envelope.to_json(),
                repr(envelope.received_at),
                self.record_ttl,
                history,
                delivery.ttl if delivery else "",
                delivery.kind if delivery else "",
                state,
                reason,
            ],
        )
        return (envelope.id, True) if int(stored) else (str(value), False)

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

    def _entries(self, messages: Sequence[Any]) -> list[Entry]:
        out = []
        for entry_id, fields in messages:
            if fields is None:
                continue
            out.append(
                Entry(str(entry_id), str(fields.get("sub", "")), str(fields.get("source", "")))
            )
        return out

    async def claim(
        self, entry: Entry, now: float | None = None
    ) -> tuple[str, dict[str, str] | None]:
        """Start an attempt at ``entry``: read its record and mark it ``processing`` (the attempt
        counted), in one script.

        Returns ``("processing", fields)`` with the record's fields after the change (its
        history left out), or ``(state, None)`` when the record is gone (``""``) or already
        terminal: the entry is then acknowledged and deleted, and nothing else changes.
        """
        now = time.time() if now is None else now
        # The event of this attempt; the script appends the attempt number and closes it.
        event = history_event_head(now, "processing", "attempt")
        reply: Any = await self.scripts.claim(
            keys=[self.keys.sub(entry.sub_id), *self._claim_keys],
            args=[
                _GROUP_B,
                entry.entry_id,
                event,
                repr(now),
                self._ttl_b,
                _TERMINAL_NAMES_B,
                _STATE_NAMES_B,
            ],
        )
        state = str(reply[0]) if reply else ""
        if state != "processing":
            return state, None
        return state, dict(zip(reply[1::2], reply[2::2], strict=True))

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
        person: PersonUpdate | None = None,
    ) -> int:
        """Record a state change; optionally ack+delete the entry, schedule a retry, dead-letter,
        and write the person's keys (``person``).

        Returns the record's attempt count (after ``count_attempt``), or -1 when the record no
        longer exists (expired or erased); the entry is still acknowledged then, so it does not
        come back, and ``person`` is still applied.
        """
        now = time.time() if now is None else now
        pairs = encode_fields({"updated_at": repr(now), **(fields or {})})
        dead_minid = ""
        if dead:
            dead_minid = f"{int((now - self.record_ttl) * 1000)}-0"
        keys: list[str | bytes] = [self.keys.sub(sub_id), *self._transition_keys]
        args: list[Any] = [
            state,
            history_event(now, state, detail),
            self._ttl_b,
            _GROUP_B if ack else "",
            ack.entry_id if ack else "",
            repr(retry_at) if retry_at is not None else "",
            f"{sub_id}|{source}" if retry_at is not None else sub_id,
            dead_minid,
            source,
            attempts_delta + (1 if count_attempt else 0),
            _STATE_NAMES_B,
            len(pairs) // 2,
            *pairs,
        ]
        if person is not None and person.identities:
            for identity in person.identities:
                keys += (
                    self.keys.lock(identity),
                    self.keys.lead(identity),
                    self.keys.creating(identity),
                )
            args += (
                len(person.identities),
                person.cache_lead,
                person.cache_ttl,
                person.mark_creating,
                max(1, int(person.mark_ttl * 1000)),
                "1" if person.clear_creating else "",
                person.release_token,
            )
        result = await self.scripts.transition(keys=keys, args=args)
        return int(result)

    async def move_due(self, now: float | None = None, limit: int = 100) -> int:
        """Put retries whose time has come back into the stream; returns how many moved."""
        now = time.time() if now is None else now
        return int(
            await self.scripts.move_due(
                keys=[self.keys.retry, self.keys.stream], args=[repr(now), limit]
            )
        )

    async def replay(self, sub_id: str, now: float | None = None) -> str:
        """Queue a finished submission again: ``replayed``, ``in-progress``, ``erased`` or
        ``unknown``."""
        now = time.time() if now is None else now
        result = await self.scripts.replay(
            keys=[self.keys.sub(sub_id), self.keys.stream, self.keys.dead, *self._state_keys],
            args=[
                sub_id,
                repr(now),
                history_event(now, "queued", {"replayed": True}),
                self.record_ttl,
                " ".join(sorted(FINAL_STATES)),
                STATE_NAMES,
            ],
        )
        return {1: "replayed", 0: "in-progress", 2: "erased"}.get(int(result), "unknown")

    async def counts(self) -> dict[str, int]:
        """How many retained submissions are in each state."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self._state_keys:
            pipe.zcard(key)
        return dict(zip(STATES, (int(n) for n in await pipe.execute()), strict=True))

    async def list_records(
        self,
        *,
        states: Sequence[str] = (),
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
    ) -> list[SubmissionRecord]:
        """Newest first, received in [since, until], in any of ``states`` (all when empty)."""
        chosen = [self.keys.state(s) for s in (states or STATES)]
        high: float | str = until if until is not None else "+inf"
        low: float | str = since if since is not None else "-inf"
        found: list[SubmissionRecord] = []
        while len(found) < limit:
            pipe = self.redis.pipeline(transaction=False)
            for key in chosen:
                pipe.zrevrangebyscore(key, high, low, start=0, num=limit * 2, withscores=True)
            rows = sorted(
                (item for page in await pipe.execute() for item in page),
                key=lambda item: item[1],
                reverse=True,
            )[: limit * 2]
            if not rows:
                break
            records = await self.records([str(sub_id) for sub_id, _ in rows])
            found.extend(r for r in records if r is not None and source in (None, r.source))
            if len(rows) < limit * 2:
                break
            high = f"({rows[-1][1]!r}"  # the next page: strictly older
        return found[:limit]

    async def records(self, sub_ids: Sequence[str]) -> list[SubmissionRecord | None]:
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.keys.sub(sub_id))
        return [SubmissionRecord.from_hash(raw) if raw else None for raw in await pipe.execute()]

    async def depth(self, pause_groups: Sequence[str]) -> QueueDepth:
        """Stream length, pending, retry-scheduled and dead counts and delivery pauses, in one
        pipelined round trip (plus one XPENDING when the stream holds entries)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.stream)
        pipe.zcard(self.keys.retry)
        pipe.xlen(self.keys.dead)
        pipe.get(self.keys.close("auth"))
        for group in pause_groups:
            pipe.pttl(self.keys.close(f"pause:{group}"))
        stream_length, retry, dead, auth, *pauses = await pipe.execute()
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
            auth_pause=str(auth) if auth else None,
            rate_limit_pauses={
                group: round(max(0, int(ms)) / 1000.0, 3)
                for group, ms in zip(pause_groups, pauses, strict=True)
            },
        )

    async def erase(self, sub_id: str, now: float | None = None) -> str:
        """Remove a submission's personal data, keeping a tombstone: ``erased``,
        ``already-erased`` or ``unknown``."""
        now = time.time() if now is None else now
        result = await self.scripts.erase(
            keys=[self.keys.sub(sub_id), self.keys.dead, *self._state_keys],
            args=[
                sub_id,
                repr(now),
                self.record_ttl,
                STATE_NAMES,
                history_event(now, "erased", {"reason": "personal data erased on request"}),
            ],
        )
        return {1: "erased", 0: "already-erased"}.get(int(result), "unknown")

    async def prune_index(self, now: float | None = None, batch: int = 500) -> int:
        """Drop index members whose record has expired; returns how many were dropped."""
        now = time.time() if now is None else now
        horizon = now - self.record_ttl  # only entries old enough to have expired
        dropped = 0
        for key in self._state_keys:
            ids: list[str] = await self.redis.zrangebyscore(  # type: ignore[assignment]
                key, "-inf", horizon, start=0, num=batch
            )
            if not ids:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for sub_id in ids:
                pipe.exists(self.keys.sub(sub_id))
            gone = [i for i, alive in zip(ids, await pipe.execute(), strict=True) if not alive]
            if gone:
                dropped += int(await self.redis.zrem(key, *gone))
        return dropped

    async def deliveries(self, entry: Entry) -> int:
        """How many times the entry was handed to a consumer (XPENDING's delivery count)."""
        rows: Any = await self.redis.xpending_range(
            self.keys.stream, GROUP, min=entry.entry_id, max=entry.entry_id, count=1
        )
        return int(rows[0]["times_delivered"]) if rows else 0

    async def record(self, sub_id: str) -> SubmissionRecord | None:
        raw: dict[str, str] = await self.redis.hgetall(self.keys.sub(sub_id))  # type: ignore[assignment]
        return SubmissionRecord.from_hash(raw) if raw else None


__all__ = ["Entry", "PersonUpdate", "RedisError", "WorkQueue"]
