"""Identity links: two leads one person's email and phone led to, and the merge map.

A link is found by the worker (``worker/links.py``) and kept here as JSON under
``{p}:link:<lead>|<lead>`` (the pair sorted), listed by the sorted set ``{p}:links`` (scored by
when it was first seen) and by one sorted set per status, ``{p}:links:<status>`` (the same
score; a pair is in the set of its current status only): its ``leads``, the ``identities``
(keys, never the email or phone) that led to each, the ``submission``, the source's ``policy``
and its ``status`` (``flagged``, ``merged``, ``ignored`` is never stored). The admin API
(``GET /v1/links``) and the dashboard's possible duplicates page read them a page at a time
(:meth:`Links.page`, newest first, a ``before`` cursor on the score), and ``GET /v1/counts``
counts each status (:meth:`Links.counts`, ``ZCARD``). A merge writes ``{p}:merged:<lead merged
away>`` = the lead kept, which a later submission, a retry or a replay that meets the
merged-away lead follows, and points the lead cache of every identity of both leads at the kept
lead. Everything expires with the records (``record_ttl``); a pair whose JSON expired leaves the
sorted sets when a listing meets it or, for those first seen more than ``record_ttl`` ago, when
links are counted or recorded (:meth:`Links.prune`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from service.keys import Keys
from service.queue.connection import RedisClient

MAX_HOPS = 8
"""A merge map chain is followed this far (A into B, then B into C...)."""

STATUSES = ("flagged", "merged")
"""The statuses a link is kept with (``ignored`` ones are not kept)."""


def pair_of(leads: Sequence[str]) -> str:
    return "|".join(sorted(leads))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Links:
    """The links found, the merge map, and the cache rewrite after a merge."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = record_ttl

    async def get(self, leads: Sequence[str]) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.link(pair_of(leads)))
        return json.loads(raw) if raw else None

    async def record(self, link: Mapping[str, Any], status: str, **extra: Any) -> bool:
        """Keep ``link`` with ``status``; whether the status is new for this pair (first seen,
        or changed: a flagged pair later merged)."""
        pair = pair_of(link["leads"])
        before = await self.get(link["leads"])
        now = time.time()
        data = {**link, **extra, "status": status, "at": (before or {}).get("at", now)}
        data["updated_at"] = now
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.link(pair), json.dumps(data, separators=(",", ":")), ex=self.ttl)
            pipe.zadd(self.keys.links, {pair: data["at"]}, nx=True)
            pipe.expire(self.keys.links, self.ttl)
            for other in STATUSES:
                if other == status:
                    pipe.zadd(self.keys.links_in(other), {pair: data["at"]})
                    pipe.expire(self.keys.links_in(other), self.ttl)
                else:
                    pipe.zrem(self.keys.links_in(other), pair)
            await pipe.execute()
        await self.prune()
        return before is None or before.get("status") != status

    async def listing(
        self, status: str | None = None, limit: int = 100, *, before: float | None = None
    ) -> list[dict[str, Any]]:
        """The links, newest first (those of ``status`` only, when given)."""
        links, _ = await self.page(status, limit, before=before)
        return links

    async def page(
        self, status: str | None = None, limit: int = 100, *, before: float | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` links first seen before ``before`` (exclusive; None: the newest),
        newest first, of ``status`` only when given; and whether more follow (ask again with
        ``before`` = the last one's ``at``). Reads a page of the sorted set, not all of it;
        pairs whose JSON expired are dropped from the sets on the way."""
        index = self.keys.links if status is None else self.keys.links_in(status)
        high = "+inf" if before is None else f"({before!r}"
        found: list[dict[str, Any]] = []
        while len(found) <= limit:
            want = limit + 1 - len(found)
            rows: list[Any] = await self.redis.zrevrangebyscore(
                index, high, "-inf", start=0, num=want, withscores=True
            )
            if not rows:
                break
            pairs = [_text(row[0]) for row in rows]
            values = await self.redis.mget([self.keys.link(p) for p in pairs])
            gone = [p for p, v in zip(pairs, values, strict=True) if v is None]
            if gone:
                await self._forget(gone)
            for value in values:
                link = json.loads(value) if value is not None else None
                if link is not None and (status is None or link.get("status") == status):
                    found.append(link)
            if len(rows) < want:
                break
            high = f"({float(rows[-1][1])!r}"
        return found[:limit], len(found) > limit

    async def counts(self) -> dict[str, int]:
        """How many links are in each status (``flagged``, ``merged``)."""
        await self.prune()
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(self.keys.links_in(status))
            sizes = await pipe.execute()
        return {status: int(n) for status, n in zip(STATUSES, sizes, strict=True)}

    async def prune(self, batch: int = 100) -> int:
        """Drop from the sorted sets up to ``batch`` pairs whose JSON expired, among those first
        seen over ``record_ttl`` ago (a link's JSON lives ``record_ttl`` from its last change,
        so younger ones are all there): the counts stay true without a scan. How many went."""
        oldest = time.time() - self.ttl
        rows = await self.redis.zrangebyscore(self.keys.links, "-inf", oldest, start=0, num=batch)
        pairs = [_text(p) for p in rows]
        if not pairs:
            return 0
        values = await self.redis.mget([self.keys.link(p) for p in pairs])
        gone = [p for p, v in zip(pairs, values, strict=True) if v is None]
        if gone:
            await self._forget(gone)
        return len(gone)

    async def _forget(self, pairs: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.links, *pairs)
            for status in STATUSES:
                pipe.zrem(self.keys.links_in(status), *pairs)
            await pipe.execute()

    async def follow(self, lead_id: str) -> str | None:
        """The lead ``lead_id`` ended in through merges, or None when it was not merged."""
        current, kept = lead_id, None
        for _ in range(MAX_HOPS):
            raw = await self.redis.get(self.keys.merged(current))
            if not raw:
                break
            current = kept = _text(raw)
        return kept

    async def merged(
        self, source: str, destination: str, identities: Sequence[str], *, cache_ttl: int
    ) -> None:
        """After ``source`` was merged into ``destination``: the merge map, and the lead cache
        of every identity of both leads (``identities``) at the kept lead."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.merged(source), destination, ex=self.ttl)
            for identity in identities:
                pipe.set(self.keys.lead(identity), destination, ex=cache_ttl)
            await pipe.execute()
