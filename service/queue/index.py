"""The state index: one sorted set per state, of the ids of the submissions in that state, scored
by receipt time. It is what listing and counting read; every script that changes a record's
state moves the id between the sets in the same step (:data:`INDEX_LUA`; the door's script,
which only adds a new record to one set, is passed that set alone and uses
:data:`INDEX_ADD_LUA`).

Members whose record expired are pruned by the workers' maintenance loop (:meth:`prune`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from service.keys import Keys
from service.queue.connection import RedisClient
from service.queue.records import STATES, Record, State

INDEX_ADD_LUA = """
-- A record joins a state's index: scored by receipt, the set kept as long as its records.
local function add_to_index(key, id, score, ttl)
  redis.call('ZADD', key, score, id)
  redis.call('EXPIRE', key, ttl)
end
"""
"""The one Lua helper for a record joining an index set: for a script given that set's key (the
door's, which only adds a new record), for :data:`INDEX_LUA`, and for the person's and the
lead's submissions sets (``queue/transitions.py``)."""

INDEX_LUA = (
    INDEX_ADD_LUA
    + "local STATE_INDEX = {"
    + ", ".join(f"{state} = {i}" for i, state in enumerate(STATES, 1))
    + "}\n"
    + f"local NSTATES = {len(STATES)}\n"
    + """
-- The state index keys follow the script's named keys, in STATE_INDEX order.
local function index_key(state)
  local i = state and STATE_INDEX[state]
  if i then return KEYS[NK + i] end
  return nil
end
local function move_in_index(id, from, to, score, ttl)
  if from == to then return end
  local old = index_key(from)
  if old then redis.call('ZREM', old, id) end
  local new = index_key(to)
  if new then add_to_index(new, id, score, ttl) end
end
"""
)
"""Lua helpers for scripts whose KEYS hold :func:`index_keys` right after their named keys."""


def index_keys(keys: Keys) -> list[str]:
    """The state index keys, in the order :data:`INDEX_LUA` expects them."""
    return [keys.state(state) for state in STATES]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which submissions a listing (or a replay by filter) is about: newest first, received in
    [since, until], in any of ``states`` (all when empty), from ``source`` (any when None)."""

    states: tuple[State, ...] = ()
    source: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 50


class StateIndex:
    """Counting and listing submissions by state."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.record_ttl = record_ttl
        self._keys = index_keys(keys)

    async def counts(self) -> dict[State, int]:
        """How many retained submissions are in each state."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self._keys:
            pipe.zcard(key)
        return dict(zip(STATES, (int(n) for n in await pipe.execute()), strict=True))

    async def select(self, selection: Selection) -> list[Record]:
        """The records ``selection`` names, newest first, at most ``selection.limit``."""
        limit = selection.limit
        chosen = [self.keys.state(s) for s in (selection.states or STATES)]
        high: float | str = selection.until if selection.until is not None else "+inf"
        low: float | str = selection.since if selection.since is not None else "-inf"
        found: list[Record] = []
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
            found.extend(
                r for r in records if r is not None and selection.source in (None, r.source)
            )
            if len(rows) < limit * 2:
                break
            high = f"({rows[-1][1]!r}"  # the next page: strictly older
        return found[:limit]

    async def page(self, selection: Selection) -> tuple[list[Record], bool]:
        """:meth:`select`, and whether more records matched than ``selection.limit``."""
        found = await self.select(replace(selection, limit=selection.limit + 1))
        return found[: selection.limit], len(found) > selection.limit

    async def submissions_of(
        self, identities: Sequence[str] = (), lead_id: str | None = None, *, limit: int
    ) -> list[str]:
        """Ids of a person's submissions (any of ``identities``) or of a lead's, newest first:
        the indexes the worker's transitions write (``Keys.person``, ``Keys.lead_submissions``).
        """
        names = [self.keys.person(identity) for identity in identities]
        if lead_id:
            names.append(self.keys.lead_submissions(lead_id))
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrevrange(name, 0, limit - 1, withscores=True)
        rows = sorted(
            (item for page in await pipe.execute() for item in page),
            key=lambda item: item[1],
            reverse=True,
        )
        return list(dict.fromkeys(str(sub_id) for sub_id, _ in rows))[:limit]

    async def counts_between(self, edges: Sequence[float]) -> dict[State, list[int]]:
        """Per state, how many submissions were received in each [edges[i], edges[i+1])."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self._keys:
            for low, high in itertools.pairwise(edges):
                pipe.zcount(key, low, f"({high!r}")
        counts = [int(n) for n in await pipe.execute()]
        width = len(edges) - 1
        return {state: counts[i * width : (i + 1) * width] for i, state in enumerate(STATES)}

    async def newest_between(
        self, since: float, until: float, *, limit: int
    ) -> list[tuple[str, float]]:
        """The newest ``limit`` submissions of any state received in [since, until): ids and
        receipt times, newest first."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self._keys:
            pipe.zrevrangebyscore(key, f"({until!r}", since, start=0, num=limit, withscores=True)
        rows = [
            (str(sub_id), float(score)) for page in await pipe.execute() for sub_id, score in page
        ]
        rows.sort(key=lambda item: item[1], reverse=True)
        return rows[:limit]

    async def sources_of(self, sub_ids: Sequence[str]) -> list[str | None]:
        """The source of each of ``sub_ids`` (None where the record is gone), one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hget(self.keys.sub(sub_id), "source")
        return [None if value is None else str(value) for value in await pipe.execute()]

    async def records(self, sub_ids: Sequence[str]) -> list[Record | None]:
        """The records of ``sub_ids`` in one round trip (None where there is none)."""
        pipe = self.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hgetall(self.keys.sub(sub_id))
        return [Record.from_hash(raw) if raw else None for raw in await pipe.execute()]

    async def prune(self, now: float | None = None, batch: int = 500) -> int:
        """Drop index members whose record has expired; returns how many were dropped."""
        now = time.time() if now is None else now
        horizon = now - self.record_ttl  # only entries old enough to have expired
        dropped = 0
        for key in self._keys:
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
