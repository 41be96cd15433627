"""The dashboard's last 24 hours: submissions received per hour, by state and by source.

By state, every submission counts: one ``ZCOUNT`` per state and hour on the state index (216
small commands in one round trip, whatever the volume). By source, the records must be read
(the index does not know sources), so only the newest :data:`SOURCE_SAMPLE` of the window are;
the chart says when it shows a sample. Both are drawn on the server (``chart_html.py``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from service.queue import Queue, State

HOURS = 24
SOURCE_SAMPLE = 5_000


@dataclass(frozen=True, slots=True)
class Activity:
    starts: tuple[float, ...]
    """The start (unix seconds, whole UTC hours) of each of the :data:`HOURS` hours."""
    by_state: dict[State, list[int]]
    by_source: dict[str, list[int]]
    sampled: int | None
    """None when every submission of the window counts by source, else how many did."""

    @property
    def total(self) -> int:
        return sum(sum(counts) for counts in self.by_state.values())


async def hourly_activity(queue: Queue, now: float | None = None) -> Activity:
    now = time.time() if now is None else now
    first = (int(now) // 3600 - HOURS + 1) * 3600
    edges = [float(first + 3600 * i) for i in range(HOURS + 1)]
    by_state = await queue.index.counts_between(edges)
    newest = await queue.index.newest_between(edges[0], edges[-1], limit=SOURCE_SAMPLE + 1)
    sampled = SOURCE_SAMPLE if len(newest) > SOURCE_SAMPLE else None
    newest = newest[:SOURCE_SAMPLE]
    sources = await queue.index.sources_of([sub_id for sub_id, _ in newest])
    tally: dict[str, Counter[int]] = {}
    for (_, received), source in zip(newest, sources, strict=True):
        if source is not None:
            tally.setdefault(source, Counter())[int((received - first) // 3600)] += 1
    by_source = {name: [tally[name][h] for h in range(HOURS)] for name in sorted(tally)}
    return Activity(tuple(edges[:-1]), by_state, by_source, sampled)
