"""A worker's steps on a record: claiming an entry, and every state change after it.

A state change is a value, :class:`Transition`: the new state and history event, the record
fields it writes (typed: the lead, :class:`~service.queue.records.Progress`, the last error...),
and what goes with it in the same script: acknowledging the entry, scheduling a retry, a dead
letter, and the person's keys (:class:`PersonUpdate`: lead cache, create marks, locks, and the
person's submissions index the dashboard searches). So one
step of the worker is one round trip, and this module is the one place a transition becomes a
script call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.keys import GROUP, Keys
from service.queue.connection import RedisClient
from service.queue.index import INDEX_LUA, index_keys
from service.queue.lua import Script
from service.queue.progress import Progress
from service.queue.records import (
    TERMINAL_STATES,
    Record,
    State,
    history_event,
    history_event_head,
)
from service.queue.stream import Entry, retry_member


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


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one submission's record, and what goes with it."""

    sub_id: str
    state: State
    source: str = ""
    detail: Mapping[str, Any] | None = None
    """The history event's detail."""
    earlier: Sequence[tuple[float, Mapping[str, Any]]] = ()
    """``(time, detail)`` of ``processing`` events that happened before this one in the same
    attempt and are recorded with it (steps whose record could wait for the next change)."""
    lead_id: str | None = None
    """The lead found or made (``""`` forgets it; None leaves it)."""
    progress: Progress | None = None
    """The attempt's progress, replacing the stored one (None leaves it)."""
    last_error: Any = None
    close_response: Any = None
    warnings: Sequence[str] = ()
    fetched: Any = None
    """What hydration fetched (JSON-able; None leaves the stored one)."""
    ack: Entry | None = None
    """Acknowledge and delete this stream entry (the attempt is over)."""
    retry_at: float | None = None
    """Put the submission on the retry schedule, due at this unix time."""
    dead: bool = False
    """Add a dead-letter entry."""
    attempts_delta: int = 0
    """Added to the record's attempt count."""
    person: PersonUpdate | None = None
    now: float | None = None

    def fields(self, now: float) -> list[str]:
        """The record fields this transition writes, as hash field/value pairs."""
        pairs = ["updated_at", repr(now)]
        if self.lead_id is not None:
            pairs += ("lead_id", self.lead_id)
        if self.progress is not None:
            pairs += ("progress", self.progress.to_json())
        for name, value in (
            ("last_error", self.last_error),
            ("close_response", self.close_response),
            ("warnings", list(self.warnings) or None),
            ("fetched", self.fetched),
        ):
            if value is not None:
                pairs += (name, json.dumps(value, separators=(",", ":"), default=str))
        return pairs


@dataclass(frozen=True, slots=True)
class _TransitionKeys:
    record: str
    stream: bytes
    retry: bytes
    dead: bytes
    lead_submissions: str
    """The lead's submissions index (``Keys.lead_submissions``), written when ``index_lead``."""


@dataclass(frozen=True, slots=True)
class _TransitionArgs:
    state: State
    event: str
    ttl: bytes
    group: bytes
    """The consumer group to acknowledge the entry in ('' = no ack)."""
    entry_id: str
    retry_at: float | None
    retry_member: str
    dead_minid: str
    """The dead stream's MINID trim point ('' = no dead entry)."""
    sub_id: str
    source: str
    attempts_delta: int
    nfields: int
    """Field/value pairs follow the named arguments."""
    people: int
    """Identities whose keys follow the state index keys, four each: lock, lead, mark, and the
    person's submissions index."""
    cache_lead: str
    cache_ttl: int
    mark_creating: str
    mark_ttl_ms: int
    clear_creating: bool
    release_token: str
    index_lead: bool
    """Add the submission to the lead's submissions index (the transition names a lead)."""
    index_since: float
    """Index members received before this (their records have expired) are pruned."""


# A person's or a lead's submissions (the dashboard's search): the id joins the set as a record
# joins a state's index (``INDEX_LUA``'s ``add_to_index``), and members older than the records'
# retention are pruned.
_SUBMISSIONS_LUA = """
local function index_submission(key, received)
  add_to_index(key, A.sub_id, received, tonumber(A.ttl))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. A.index_since)
end
"""

# Returns the record's attempt count, or -1 when it had expired or been erased (nothing is
# recreated then; the entry is still acknowledged and the person's keys are still written).
_TRANSITION = Script(
    _TransitionKeys,
    _TransitionArgs,
    """
local old = redis.call('HGET', K.record, 'state')
local attempts = -1
local score = nil
if old and old ~= 'erased' then
  local args = {'state', A.state}
  for i = 1, tonumber(A.nfields) * 2 do args[#args + 1] = ARGV[NA + i] end
  redis.call('HSET', K.record, unpack(args))
  if not tonumber(redis.call('HGET', K.record, 'attempts')) then
    redis.call('HSET', K.record, 'attempts', '0')  -- a damaged count must not block the record
  end
  attempts = redis.call('HINCRBY', K.record, 'attempts', tonumber(A.attempts_delta))
  local history = redis.call('HGET', K.record, 'history')
  if history and history ~= '' then history = history .. '\\n' .. A.event else history = A.event end
  redis.call('HSET', K.record, 'history', history)
  redis.call('EXPIRE', K.record, tonumber(A.ttl))
  score = tonumber(redis.call('HGET', K.record, 'received_at')) or 0
  move_in_index(redis.call('HGET', K.record, 'id'), old, A.state, score, tonumber(A.ttl))
  if A.index_lead == '1' then index_submission(K.lead_submissions, score) end
  if A.retry_at ~= '' then
    redis.call('ZADD', K.retry, tonumber(A.retry_at), A.retry_member)
  end
  if A.dead_minid ~= '' then
    local dead = redis.call('XADD', K.dead, 'MINID', '~', A.dead_minid, '*',
      'sub', A.sub_id, 'source', A.source)
    redis.call('HSET', K.record, 'dead_entry', dead)
  end
end
if A.group ~= '' then
  redis.call('XACK', K.stream, A.group, A.entry_id)
  redis.call('XDEL', K.stream, A.entry_id)
end
local people = tonumber(A.people)
for i = 0, people - 1 do
  local at = NK + NSTATES + i * 4
  local lock, lead, mark = KEYS[at + 1], KEYS[at + 2], KEYS[at + 3]
  if score then index_submission(KEYS[at + 4], score) end
  if A.cache_lead ~= '' then redis.call('SET', lead, A.cache_lead, 'EX', tonumber(A.cache_ttl)) end
  if A.mark_creating ~= '' then
    redis.call('SET', mark, A.mark_creating, 'PX', tonumber(A.mark_ttl_ms))
  elseif A.clear_creating == '1' then
    redis.call('DEL', mark)
  end
  if A.release_token ~= '' and redis.call('GET', lock) == A.release_token then
    redis.call('DEL', lock)
  end
end
return attempts
""",
    helpers=[INDEX_LUA, _SUBMISSIONS_LUA],
)


@dataclass(frozen=True, slots=True)
class _ClaimKeys:
    record: str
    stream: bytes


@dataclass(frozen=True, slots=True)
class _ClaimArgs:
    group: bytes
    entry_id: str
    event_head: str
    """The history event up to the attempt number (the script appends ``<attempts>}}``)."""
    now: float
    ttl: bytes


_TERMINAL_LUA = "local TERMINAL = {" + ", ".join(f"{s} = true" for s in TERMINAL_STATES) + "}\n"

# Returns {state} when the record is gone ('') or terminal: the entry is acknowledged and
# deleted, nothing else changes. Otherwise {'processing', field, value, ...}: the record after
# the change, without its history (the worker does not need it).
_CLAIM = Script(
    _ClaimKeys,
    _ClaimArgs,
    """
local old = redis.call('HGET', K.record, 'state')
if not old or TERMINAL[old] then
  redis.call('XACK', K.stream, A.group, A.entry_id)
  redis.call('XDEL', K.stream, A.entry_id)
  return {old or ''}
end
if not tonumber(redis.call('HGET', K.record, 'attempts')) then
  redis.call('HSET', K.record, 'attempts', '0')  -- a damaged count must not block the record
end
local attempts = redis.call('HINCRBY', K.record, 'attempts', 1)
local event = A.event_head .. attempts .. '}}'
local history = redis.call('HGET', K.record, 'history')
if history and history ~= '' then history = history .. '\\n' .. event else history = event end
redis.call('HSET', K.record, 'state', 'processing', 'updated_at', A.now, 'history', history)
redis.call('EXPIRE', K.record, tonumber(A.ttl))
local score = tonumber(redis.call('HGET', K.record, 'received_at')) or 0
move_in_index(redis.call('HGET', K.record, 'id'), old, 'processing', score, tonumber(A.ttl))
local raw = redis.call('HGETALL', K.record)
local out = {'processing'}
for i = 1, #raw, 2 do
  if raw[i] ~= 'history' then
    out[#out + 1] = raw[i]
    out[#out + 1] = raw[i + 1]
  end
end
return out
""",
    helpers=[_TERMINAL_LUA, INDEX_LUA],
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What claiming an entry found: the record's state, and the record itself when the attempt
    goes ahead (``state == "processing"``)."""

    state: str
    """``processing``, a terminal state, or ``""`` when the record is gone."""
    fields: dict[str, str] | None = None
    """The record's hash fields after the claim, its history left out."""

    def record(self) -> Record:
        """The claimed record (ValueError, KeyError or TypeError when it is damaged)."""
        if self.fields is None:
            raise ValueError(f"nothing was claimed (the record is {self.state or 'gone'})")
        return Record.from_hash(self.fields)


class Transitions:
    """Claiming entries and recording state changes, for one key prefix."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.keys = keys
        self.record_ttl = record_ttl
        self._claim = _CLAIM.bind(redis)
        self._transition = _TRANSITION.bind(redis)
        # What every call names besides the record, computed (and encoded) once.
        self._index = [key.encode() for key in index_keys(keys)]
        self._stream = keys.stream.encode()
        self._retry = keys.retry.encode()
        self._dead = keys.dead.encode()
        self._ttl = str(record_ttl).encode()
        self._group = GROUP.encode()

    async def claim(self, entry: Entry, now: float | None = None) -> Claimed:
        """Start an attempt at ``entry``: read its record and mark it ``processing`` (the attempt
        counted), in one script. A record that is gone or terminal is acknowledged instead, and
        nothing else changes."""
        now = time.time() if now is None else now
        reply: Any = await self._claim(
            _ClaimKeys(self.keys.sub(entry.sub_id), self._stream),
            _ClaimArgs(
                group=self._group,
                entry_id=entry.entry_id,
                event_head=history_event_head(now, "processing", "attempt"),
                now=now,
                ttl=self._ttl,
            ),
            self._index,
        )
        state = str(reply[0]) if reply else ""
        if state != "processing":
            return Claimed(state)
        return Claimed(state, dict(zip(reply[1::2], reply[2::2], strict=True)))

    async def apply(self, change: Transition) -> int:
        """Record ``change``. Returns the record's attempt count, or -1 when the record no
        longer exists (expired or erased); the entry is still acknowledged then, so it does not
        come back, and the person's keys are still written."""
        now = time.time() if change.now is None else change.now
        pairs = change.fields(now)
        person = change.person
        identities = person.identities if person is not None else ()
        more_keys: list[str | bytes] = list(self._index)
        for identity in identities:
            more_keys += (
                self.keys.lock(identity),
                self.keys.lead(identity),
                self.keys.creating(identity),
                self.keys.person(identity),
            )
        ack = change.ack
        args = _TransitionArgs(
            state=change.state,
            event="\n".join(
                [
                    *(history_event(at, "processing", detail) for at, detail in change.earlier),
                    history_event(now, change.state, change.detail),
                ]
            ),
            ttl=self._ttl,
            group=self._group if ack else b"",
            entry_id=ack.entry_id if ack else "",
            retry_at=change.retry_at,
            retry_member=retry_member(change.sub_id, change.source),
            dead_minid=f"{int((now - self.record_ttl) * 1000)}-0" if change.dead else "",
            sub_id=change.sub_id,
            source=change.source,
            attempts_delta=change.attempts_delta,
            nfields=len(pairs) // 2,
            people=len(identities),
            cache_lead=person.cache_lead if person else "",
            cache_ttl=person.cache_ttl if person else 0,
            mark_creating=person.mark_creating if person else "",
            mark_ttl_ms=max(1, int(person.mark_ttl * 1000)) if person else 1,
            clear_creating=bool(person and person.clear_creating),
            release_token=person.release_token if person else "",
            index_lead=bool(change.lead_id),
            index_since=now - self.record_ttl,
        )
        result = await self._transition(
            _TransitionKeys(
                self.keys.sub(change.sub_id),
                self._stream,
                self._retry,
                self._dead,
                self.keys.lead_submissions(change.lead_id or ""),
            ),
            args,
            more_keys,
            pairs,
        )
        return int(result)
