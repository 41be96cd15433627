"""Reading records, and the two changes an operator makes to one: replay and erase.

Replay puts a finished submission back in the stream with a fresh attempt budget. It keeps what
reached Close (the lead, the steps done or skipped: ``Progress.for_replay``) and drops the rest,
so the next attempt re-runs only what did not happen: no second lead, no second note. Erase
removes a submission's personal data and keeps a tombstone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from service.keys import Keys
from service.queue.connection import RedisClient
from service.queue.index import INDEX_LUA, index_keys
from service.queue.lua import Script
from service.queue.records import (
    ENVELOPE_FIELD,
    FINAL_STATES,
    REPLAY_CLEARS,
    Record,
    history_event,
)

ReplayOutcome = Literal["replayed", "in-progress", "erased", "unknown"]
EraseOutcome = Literal["erased", "already-erased", "unknown"]


@dataclass(frozen=True, slots=True)
class _RecordKeys:
    record: str
    stream: str
    dead: str


@dataclass(frozen=True, slots=True)
class _ReplayArgs:
    sub_id: str
    now: float
    event: str
    ttl: int
    seen_update: str
    """The record's ``updated_at`` when its progress was read: the replay applies only if
    nothing changed it since."""
    progress: str
    """The progress the replay keeps (JSON)."""


_FINAL_LUA = "local FINAL = {" + ", ".join(f"{s} = true" for s in FINAL_STATES) + "}\n"

# The hash fields to delete follow the named arguments (``REPLAY_CLEARS``). Returns 1 when
# replayed, 0 when the submission is not finished (in progress), 2 when erased, -1 when unknown,
# 3 when the record changed since its progress was read.
_REPLAY = Script(
    _RecordKeys,
    _ReplayArgs,
    """
if redis.call('EXISTS', K.record) == 0 then return -1 end
local state = redis.call('HGET', K.record, 'state')
if state == 'erased' then return 2 end
if not FINAL[state] then return 0 end
if redis.call('HGET', K.record, 'updated_at') ~= A.seen_update then return 3 end
local lead = redis.call('HGET', K.record, 'lead_id')
if lead and lead ~= '' then redis.call('HSET', K.record, 'previous_lead_id', lead) end
local dead = redis.call('HGET', K.record, 'dead_entry')
if dead then redis.call('XDEL', K.dead, dead) end
redis.call('HDEL', K.record, unpack(ARGV, NA + 1))
redis.call('HSET', K.record, 'state', 'queued', 'attempts', '0', 'replayed_at', A.now,
  'updated_at', A.now, 'progress', A.progress)
local history = redis.call('HGET', K.record, 'history') or ''
redis.call('HSET', K.record, 'history', history .. '\\n' .. A.event)
redis.call('EXPIRE', K.record, tonumber(A.ttl))
local score = tonumber(redis.call('HGET', K.record, 'received_at'))
move_in_index(A.sub_id, state, 'queued', score, tonumber(A.ttl))
local source = redis.call('HGET', K.record, 'source') or ''
redis.call('XADD', K.stream, '*', 'sub', A.sub_id, 'source', source)
return 1
""",
    helpers=[_FINAL_LUA, INDEX_LUA],
)


@dataclass(frozen=True, slots=True)
class _EraseArgs:
    sub_id: str
    now: float
    ttl: int
    event: str


# The record becomes a tombstone (id, source, times, one history event), it leaves its state's
# index for the ``erased`` one, and its dead-letter entry goes. A worker that meets the
# tombstone acknowledges the entry and does nothing else. Returns 1 when erased, 0 when it
# already was, -1 when unknown.
_ERASE = Script(
    _RecordKeys,
    _EraseArgs,
    """
local state = redis.call('HGET', K.record, 'state')
if not state then return -1 end
if state == 'erased' then return 0 end
local source = redis.call('HGET', K.record, 'source') or ''
local received = redis.call('HGET', K.record, 'received_at') or A.now
local dead = redis.call('HGET', K.record, 'dead_entry')
if dead then redis.call('XDEL', K.dead, dead) end
redis.call('DEL', K.record)
redis.call('HSET', K.record, 'id', A.sub_id, 'source', source, 'state', 'erased',
  'received_at', received, 'updated_at', A.now, 'erased_from', state, 'attempts', '0',
  'history', A.event)
redis.call('EXPIRE', K.record, tonumber(A.ttl))
move_in_index(A.sub_id, state, 'erased', tonumber(received), tonumber(A.ttl))
return 1
""",
    helpers=[INDEX_LUA],
)

_REPLAYED: dict[int, ReplayOutcome] = {1: "replayed", 0: "in-progress", 2: "erased"}
_ERASED: dict[int, EraseOutcome] = {1: "erased", 0: "already-erased"}


class RecordStore:
    """The records of one key prefix."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.record_ttl = record_ttl
        self._index = index_keys(keys)
        self._replay = _REPLAY.bind(redis)
        self._erase = _ERASE.bind(redis)

    async def get(self, sub_id: str) -> Record | None:
        raw: dict[str, str] = await self.redis.hgetall(self.keys.sub(sub_id))  # type: ignore[assignment]
        return Record.from_hash(raw) if raw else None

    async def envelope(self, sub_id: str) -> str | None:
        """The envelope's JSON alone (None when the record is gone or erased)."""
        raw = await self.redis.hget(self.keys.sub(sub_id), ENVELOPE_FIELD)
        return raw if isinstance(raw, str) else None

    def _keys(self, sub_id: str) -> _RecordKeys:
        return _RecordKeys(self.keys.sub(sub_id), self.keys.stream, self.keys.dead)

    async def replay(self, sub_id: str, now: float | None = None) -> ReplayOutcome:
        """Queue a finished submission again."""
        for _ in range(3):  # the record changed between the read and the script: read again
            raw: dict[str, str] = await self.redis.hgetall(self.keys.sub(sub_id))  # type: ignore[assignment]
            if not raw:
                return "unknown"
            record = Record.from_hash(raw)
            if record.state == "erased":
                return "erased"
            if record.state not in FINAL_STATES:
                return "in-progress"
            at = time.time() if now is None else now
            result = int(
                await self._replay(
                    self._keys(sub_id),
                    _ReplayArgs(
                        sub_id=sub_id,
                        now=at,
                        event=history_event(at, "queued", {"replayed": True}),
                        ttl=self.record_ttl,
                        seen_update=raw.get("updated_at", ""),
                        progress=record.progress.for_replay().to_json(),
                    ),
                    self._index,
                    REPLAY_CLEARS,
                )
            )
            if result != 3:
                return _REPLAYED.get(result, "unknown")
        return "in-progress"

    async def replay_all(self, sub_ids: Sequence[str]) -> list[tuple[str, ReplayOutcome]]:
        """Replay each of ``sub_ids`` in turn: ``[(id, outcome)]``."""
        return [(sub_id, await self.replay(sub_id)) for sub_id in sub_ids]

    async def erase(self, sub_id: str, now: float | None = None) -> EraseOutcome:
        """Remove a submission's personal data, keeping a tombstone."""
        now = time.time() if now is None else now
        event = history_event(now, "erased", {"reason": "personal data erased on request"})
        result = await self._erase(
            self._keys(sub_id), _EraseArgs(sub_id, now, self.record_ttl, event), self._index
        )
        return _ERASED.get(int(result), "unknown")
