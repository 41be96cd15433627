"""Token buckets in Redis, shared by every process (the Lua script is ``RATE_BUCKET`` in
``scripts.py``; the receiver runs it through a :class:`ScriptBatcher`, so the buckets of
concurrent requests share round trips)."""

from __future__ import annotations

import time

from service.queue.batching import ScriptBatcher


async def take(
    script: ScriptBatcher,
    bucket: str,
    *,
    rate: float,
    capacity: float,
    cost: float = 1.0,
    pause_key: str | None = None,
    now: float | None = None,
) -> float:
    """Take ``cost`` tokens from ``bucket``: 0.0 when taken, else seconds to wait first.

    ``pause_key``, when given and set in Redis, makes every taker wait for its remaining life.
    """
    now_ms = int((time.time() if now is None else now) * 1000)
    wait_ms = await script(
        [bucket, pause_key or bucket + ":nopause"], [now_ms, rate, capacity, cost]
    )
    return int(wait_ms) / 1000.0
