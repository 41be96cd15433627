"""What the door stores, in one script per request: the door's rate-limit tokens, delivery
idempotency, the submission's record and its stream entry.

The script takes a token from each of the request's rate-limit buckets (the client's, then the
source's), then looks the delivery up, then writes the record and the stream entry; it stops
at the first of these that refuses, so a request over a limit or a repeated delivery costs that
same one script and stores nothing. A request the door refuses for another reason (a bad
signature, an unreadable body...) still takes its tokens, with the limits-only script
(:meth:`Intake.take_tokens`): a flood of bad requests is limited like any other.

Both scripts are group-committed (:class:`~service.queue.batching.ScriptBatcher`): the scripts
of concurrent requests share round trips, and each request still waits for its own answer.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import RedisError

from service.envelope import Envelope
from service.errors import OverLimit
from service.keys import Keys
from service.queue.batching import ScriptBatcher
from service.queue.buckets import BUCKET_LUA
from service.queue.connection import RedisClient
from service.queue.index import INDEX_ADD_LUA
from service.queue.lua import Script
from service.queue.records import State, history_event


@dataclass(slots=True)
class DeliveryKey:
    """What identifies one delivery: ``kind`` says where it came from (``idempotency-key``,
    ``webhook-id``, ``event-id``, ``body-hash``), ``digest`` is the hashed value, ``ttl`` how
    long a repeat is recognised. (Made per request and read only: not frozen, whose
    ``__init__`` costs more.)"""

    kind: str
    digest: str
    ttl: int


@dataclass(frozen=True, slots=True)
class Throttle:
    """One of the door's rate-limit buckets a request takes a token from."""

    kind: Literal["client", "source"]
    """Whose limit: the sender's address (``client``) or the endpoint as a whole."""
    scope: str
    """The bucket's name: ``ip:<source>:<address>`` or ``source:<source>``."""
    rate: float
    """Tokens per second."""
    capacity: float


# The scripts' keys and arguments: built once per request, on the door's hot path, so not
# frozen (a frozen dataclass's __init__ costs a microsecond more for these many fields), and
# filled by position (``Intake._write``, ``take_tokens``): a field added or moved here is
# added or moved there too.
@dataclass(slots=True)
class _LimitKeys:
    client_bucket: str
    source_bucket: str
    """The buckets (placeholders, never touched, for a limit the request does not have)."""


@dataclass(slots=True)
class _LimitArgs:
    now_ms: int
    client_rate: float | None
    client_capacity: float | None
    source_rate: float | None
    source_capacity: float | None
    """None: the request has no such limit."""


@dataclass(slots=True)
class _StoreKeys(_LimitKeys):
    stream: str
    record: str
    idem: str
    """The delivery's idempotency key (a placeholder when there is none)."""
    index: str
    """The state index the record joins (``queued`` or ``rejected``): the one of
    ``queue/index.py``'s sets a new record is in, passed alone rather than all of them."""


@dataclass(slots=True)
class _StoreArgs(_LimitArgs):
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


_DOOR_TOKENS_LUA = """
-- One token from the client's bucket, then from the source's (a bucket the request does not
-- have is skipped); nil when taken, else {2, milliseconds to wait, whose limit}.
local function take_door_tokens()
  local now = tonumber(A.now_ms)
  for _, kind in ipairs({'client', 'source'}) do
    local rate = A[kind .. '_rate']
    if rate ~= '' then
      local taken, wait = take_tokens(K[kind .. '_bucket'], false, now, tonumber(rate),
        tonumber(A[kind .. '_capacity']), 1, 1)
      if taken == 0 then return {2, wait, kind} end
    end
  end
  return nil
end
"""

# Returns {1, stream entry id or ''} when stored, {0, first submission's id} for a repeated
# delivery (nothing new stored), {2, ms to wait, whose limit} when over a rate limit (nothing
# stored, nor looked up).
_STORE = Script(
    _StoreKeys,
    _StoreArgs,
    """
local limited = take_door_tokens()
if limited then return limited end
if A.idem_ttl ~= '' then
  local first = redis.call('GET', K.idem)
  if first then return {0, first} end
  redis.call('SET', K.idem, A.sub_id, 'EX', tonumber(A.idem_ttl))
end
-- The record in one HSET: the optional fields join its arguments, not calls of their own.
local fields = {'id', A.sub_id, 'source', A.source, 'state', A.state,
  'received_at', A.received_at, 'updated_at', A.received_at, 'attempts', '0',
  'envelope', A.envelope, 'history', A.history}
if A.delivery_kind ~= '' then
  fields[#fields + 1] = 'delivery_key'; fields[#fields + 1] = A.delivery_kind
end
if A.reason ~= '' then fields[#fields + 1] = 'reason'; fields[#fields + 1] = A.reason end
redis.call('HSET', K.record, unpack(fields))
redis.call('EXPIRE', K.record, tonumber(A.record_ttl))
add_to_index(K.index, A.sub_id, A.received_at, tonumber(A.record_ttl))
local entry = ''
if A.state == 'queued' then
  entry = redis.call('XADD', K.stream, '*', 'sub', A.sub_id, 'source', A.source)
end
return {1, entry}
""",
    helpers=[INDEX_ADD_LUA, BUCKET_LUA, _DOOR_TOKENS_LUA],
)

# Returns {1} when every token was taken, {2, ms to wait, whose limit} otherwise.
_TOKENS = Script(
    _LimitKeys,
    _LimitArgs,
    """
return take_door_tokens() or {1}
""",
    helpers=[BUCKET_LUA, _DOOR_TOKENS_LUA],
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
        self._index = {state: keys.state(state) for state in ("queued", "rejected")}
        self._stream = keys.stream
        self._no_bucket = keys.throttle("-")
        self._store = ScriptBatcher(redis, _STORE.bind(redis))
        self._tokens = ScriptBatcher(redis, _TOKENS.bind(redis))

    def acknowledge_after(self, replicas: int, timeout_seconds: float) -> None:
        """Answer a stored submission only once it reached ``replicas`` replicas (Redis
        ``WAIT``), failing it (a 503 at the door) when that took longer than the timeout."""
        self._store.wait_for_replicas(replicas, timeout_seconds)

    def enqueue(
        self,
        envelope: Envelope,
        delivery: DeliveryKey | None = None,
        throttles: Sequence[Throttle] = (),
    ) -> Coroutine[Any, Any, tuple[str, bool]]:
        """Take the rate-limit tokens, store the record and add the stream entry, in one
        atomic step (awaited: the write's coroutine itself, without a frame of its own).

        Gives ``(submission id, True)`` when queued, or ``(first submission's id, False)`` when
        ``delivery`` names a delivery already accepted within its window (nothing is stored).
        Raises ``OverLimit`` when a bucket of ``throttles`` is empty (nothing is stored).
        """
        history = history_event(envelope.received_at, "queued")
        return self._write(envelope, "queued", history, delivery, throttles=throttles)

    async def store_rejected(
        self,
        envelope: Envelope,
        reason: str,
        delivery: DeliveryKey | None = None,
        throttles: Sequence[Throttle] = (),
    ) -> tuple[str, bool]:
        """Keep a submission refused at the door (spam) as a ``rejected`` record, with its
        rate-limit tokens taken as for any other (``OverLimit`` when a bucket is empty).

        It is never added to the stream, so no worker sees it and nothing reaches Close; the
        record (with the payload, for review) expires like any other. A repeat of the same
        delivery answers like the first one.
        """
        at = envelope.received_at
        history = "\n".join(
            (history_event(at, "received"), history_event(at, "rejected", {"reason": reason}))
        )
        return await self._write(
            envelope, "rejected", history, delivery, throttles=throttles, reason=reason
        )

    async def take_tokens(self, throttles: Sequence[Throttle], now: float | None = None) -> None:
        """Take a token from each of ``throttles`` and nothing else (a request the door
        refuses, or one whose next check is costly); ``OverLimit`` when a bucket is empty."""
        if throttles:
            client, source = _by_kind(throttles)
            keys = _LimitKeys(self._bucket(client), self._bucket(source))
            args = _LimitArgs(
                int((time.time() if now is None else now) * 1000),
                client.rate if client else None,
                client.capacity if client else None,
                source.rate if source else None,
                source.capacity if source else None,
            )
            _raise_if_limited(await self._tokens(keys, args))

    async def _write(
        self,
        envelope: Envelope,
        state: State,
        history: str,
        delivery: DeliveryKey | None,
        *,
        throttles: Sequence[Throttle],
        reason: str = "",
    ) -> tuple[str, bool]:
        if self.refusal is not None:
            raise WritesRefused(self.refusal)
        client, source = _by_kind(throttles) if throttles else (None, None)
        # By position, in the fields' order (a keyword call of a class builds a dict of the
        # keywords on every request); the tests of the record, its TTLs and both limits read
        # back each value.
        keys = _StoreKeys(
            self._bucket(client),
            self._bucket(source),
            self._stream,
            self.keys.sub(envelope.id),
            self.keys.idem(envelope.source, delivery.digest if delivery else "-"),
            self._index[state],
        )
        args = _StoreArgs(
            int(envelope.received_at * 1000),
            client.rate if client else None,
            client.capacity if client else None,
            source.rate if source else None,
            source.capacity if source else None,
            envelope.id,
            envelope.source,
            envelope.to_json(),
            envelope.received_at,
            self.record_ttl,
            history,
            delivery.ttl if delivery else None,
            delivery.kind if delivery else "",
            state,
            reason,
        )
        reply = await self._store(keys, args)
        _raise_if_limited(reply)
        stored, value = reply
        return (envelope.id, True) if int(stored) else (str(value), False)

    def _bucket(self, throttle: Throttle | None) -> str:
        """The bucket's key (a placeholder, never touched, for a limit the request lacks)."""
        return self.keys.throttle(throttle.scope) if throttle else self._no_bucket


def _by_kind(throttles: Sequence[Throttle]) -> tuple[Throttle | None, Throttle | None]:
    """``(the client's, the source's)`` of ``throttles``."""
    client = source = None
    for throttle in throttles:
        if throttle.kind == "client":
            client = throttle
        else:
            source = throttle
    return client, source


def _raise_if_limited(reply: Any) -> None:
    if int(reply[0]) == 2:
        kind = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
        raise OverLimit(kind, int(reply[1]) / 1000.0)
