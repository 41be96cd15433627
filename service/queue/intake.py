"""What the door stores: a submission's record and stream entry, with delivery idempotency, in
one atomic step; and the door's rate-limit buckets.

Both are group-committed (:class:`~service.queue.batching.ScriptBatcher`): the scripts of
concurrent requests share round trips, and each request still waits for its own answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import RedisError

from service.envelope import Envelope
from service.keys import Keys
from service.queue import buckets
from service.queue.batching import ScriptBatcher
from service.queue.connection import RedisClient
from service.queue.index import INDEX_LUA, index_keys
from service.queue.lua import Script
from service.queue.records import State, history_event


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """What identifies one delivery: ``kind`` says where it came from (``idempotency-key``,
    ``webhook-id``, ``event-id``, ``body-hash``), ``digest`` is the hashed value, ``ttl`` how
    long a repeat is recognised."""

    kind: str
    digest: str
    ttl: int


@dataclass(frozen=True, slots=True)
class _StoreKeys:
    stream: str
    record: str
    idem: str
    """The delivery's idempotency key (a placeholder when there is none)."""


@dataclass(frozen=True, slots=True)
class _StoreArgs:
    sub_id: str
    source: str
    envelope: bytes
    received_at: float
    record_ttl: int
    history: str
    """The record's first history lines (JSON lines)."""
    idem_ttl: int | None
    """Seconds the delivery is remembered; None: no idempotency key."""
    delivery_kind: str
    state: State
    """``queued`` also adds the stream entry; ``rejected`` (spam) only keeps the record."""
    reason: str


# A repeated delivery finds the first submission's id under the idempotency key, and nothing
# new is stored. Returns {1, stream entry id or ''} when stored, {0, first submission's id}.
_STORE = Script(
    _StoreKeys,
    _StoreArgs,
    """
if A.idem_ttl ~= '' then
  local first = redis.call('GET', K.idem)
  if first then return {0, first} end
  redis.call('SET', K.idem, A.sub_id, 'EX', tonumber(A.idem_ttl))
end
redis.call('HSET', K.record,
  'id', A.sub_id, 'source', A.source, 'state', A.state, 'received_at', A.received_at,
  'updated_at', A.received_at, 'attempts', '0', 'envelope', A.envelope, 'history', A.history)
if A.delivery_kind ~= '' then redis.call('HSET', K.record, 'delivery_key', A.delivery_kind) end
if A.reason ~= '' then redis.call('HSET', K.record, 'reason', A.reason) end
redis.call('EXPIRE', K.record, tonumber(A.record_ttl))
move_in_index(A.sub_id, nil, A.state, tonumber(A.received_at), tonumber(A.record_ttl))
local entry = ''
if A.state == 'queued' then
  entry = redis.call('XADD', K.stream, '*', 'sub', A.sub_id, 'source', A.source)
end
return {1, entry}
""",
    helpers=[INDEX_LUA],
)


class WritesRefused(RedisError):
    """The door stores nothing now (``Intake.refusal`` says why): the sender gets a 503."""


class Intake:
    """The door's writes."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.keys = keys
        self.record_ttl = record_ttl
        self.refusal: str | None = None
        """Set while nothing may be stored (a Redis without persistence in production)."""
        self._index = index_keys(keys)
        self._store = ScriptBatcher(redis, _STORE.bind(redis))
        self._bucket = ScriptBatcher(redis, buckets.TAKE.bind(redis))

    def acknowledge_after(self, replicas: int, timeout_seconds: float) -> None:
        """Answer a stored submission only once it reached ``replicas`` replicas (Redis
        ``WAIT``), failing it (a 503 at the door) when that took longer than the timeout."""
        self._store.wait_for_replicas(replicas, timeout_seconds)

    async def enqueue(
        self, envelope: Envelope, delivery: DeliveryKey | None = None
    ) -> tuple[str, bool]:
        """Store the record and add the stream entry in one atomic step.

        Returns ``(submission id, True)`` when queued, or ``(first submission's id, False)`` when
        ``delivery`` names a delivery already accepted within its window (nothing is stored).
        """
        history = history_event(envelope.received_at, "queued")
        return await self._write(envelope, "queued", history, delivery)

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
        return await self._write(envelope, "rejected", history, delivery, reason=reason)

    async def _write(
        self,
        envelope: Envelope,
        state: State,
        history: str,
        delivery: DeliveryKey | None,
        *,
        reason: str = "",
    ) -> tuple[str, bool]:
        if self.refusal is not None:
            raise WritesRefused(self.refusal)
        keys = _StoreKeys(
            stream=self.keys.stream,
            record=self.keys.sub(envelope.id),
            idem=self.keys.idem(envelope.source, delivery.digest if delivery else "-"),
        )
        args = _StoreArgs(
            sub_id=envelope.id,
            source=envelope.source,
            envelope=envelope.to_json(),
            received_at=envelope.received_at,
            record_ttl=self.record_ttl,
            history=history,
            idem_ttl=delivery.ttl if delivery else None,
            delivery_kind=delivery.kind if delivery else "",
            state=state,
            reason=reason,
        )
        stored, value = await self._store(keys, args, self._index)
        return (envelope.id, True) if int(stored) else (str(value), False)

    async def take_token(
        self, scope: str, *, rate: float, capacity: float, now: float | None = None
    ) -> float:
        """One token of the door's rate-limit bucket ``scope`` (``ip:<source>:<address>``,
        ``source:<source>``): 0.0 when taken, else the seconds to wait first."""
        bucket = self.keys.throttle(scope)
        _, wait_ms = await self._bucket(
            buckets.BucketKeys(bucket, buckets.no_pause(bucket)),
            buckets.BucketArgs(buckets.now_ms(now), rate, capacity, 1, 1),
        )
        return int(wait_ms) / 1000.0
