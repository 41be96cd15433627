"""Identity links: two leads one person's email and phone led to, and the merge map.

A link is found by the worker (``worker/links.py``) and kept here as JSON under
``{p}:link:<lead>|<lead>`` (the pair sorted), listed by the sorted set ``{p}:links`` (scored by
when it was first seen): its ``leads``, the ``identities`` (keys, never the email or phone) that
led to each, the ``submission``, the source's ``policy`` and its ``status`` (``flagged``,
``merged``, ``ignored`` is never stored). A merge writes ``{p}:merged:<lead merged away>`` = the
lead kept, which a later submission, a retry or a replay that meets the merged-away lead
follows, and points the lead cache of every identity of both leads at the kept lead. Everything
expires with the records (``record_ttl``).
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


def pair_of(leads: Sequence[str]) -> str:
    return "|".join(sorted(leads))


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
            await pipe.execute()
        return before is None or before.get("status") != status

    async def listing(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The links, newest first (those of ``status`` only, when given)."""
        pairs = [
            p.decode() if isinstance(p, bytes) else str(p)
            for p in await self.redis.zrevrange(self.keys.links, 0, -1)
        ]
        if not pairs:
            return []
        values = await self.redis.mget([self.keys.link(p) for p in pairs])
        gone = [p for p, v in zip(pairs, values, strict=True) if v is None]
        if gone:
            await self.redis.zrem(self.keys.links, *gone)
        found = [json.loads(v) for v in values if v is not None]
        chosen = [link for link in found if status is None or link.get("status") == status]
        return chosen[:limit]

    async def follow(self, lead_id: str) -> str | None:
        """The lead ``lead_id`` ended in through merges, or None when it was not merged."""
        current, kept = lead_id, None
        for _ in range(MAX_HOPS):
            raw = await self.redis.get(self.keys.merged(current))
            if not raw:
                break
            current = kept = raw.decode() if isinstance(raw, bytes) else str(raw)
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
