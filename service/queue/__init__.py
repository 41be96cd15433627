"""The Redis layer: the work stream, the submission records and their state index, under one
key prefix (``service/keys.py``). One :class:`Queue` holds the parts, each with one job:

- ``intake``: what the door stores (rate-limit tokens + delivery idempotency + record + stream
  entry, one script);
- ``stream``: the consumer group, reading, taking over, the retry schedule, the depth;
- ``marker``: the marker of the data, which tells a Redis that came back empty (``marker.py``);
- ``steps``: a worker's claim of an entry and every state change after it (:class:`Transition`);
- ``records``: reading a record, replay and erase;
- ``index``: counting and listing by state.

Every multi-key change is one Lua script, with named keys and arguments (``lua.py``), kept
beside the part that owns it.
"""

from __future__ import annotations

from typing import Protocol

from service.keys import Keys
from service.queue.connection import RedisClient
from service.queue.index import Selection, StateIndex
from service.queue.intake import DeliveryKey, Intake, Throttle
from service.queue.links import Links
from service.queue.marker import DataLoss, DataMarker
from service.queue.progress import Progress, StepMark
from service.queue.records import Record, State
from service.queue.store import RecordStore, ReplayOutcome
from service.queue.stream import Entry, QueueDepth, WorkStream
from service.queue.transitions import Claimed, PersonUpdate, Transition, Transitions


class QueueSettings(Protocol):
    """What building a :class:`Queue` reads from the process settings."""

    @property
    def key_prefix(self) -> str: ...

    @property
    def record_ttl_seconds(self) -> int: ...


class Queue:
    """Stream, records and index of one key prefix, sharing one Redis client."""

    def __init__(self, redis: RedisClient, keys: Keys, *, record_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.record_ttl = record_ttl
        self.intake = Intake(redis, keys, record_ttl=record_ttl)
        self.marker = DataMarker(redis, keys)
        self.stream = WorkStream(redis, keys, self.marker)
        self.steps = Transitions(redis, keys, record_ttl=record_ttl)
        self.records = RecordStore(redis, keys, record_ttl=record_ttl)
        self.index = StateIndex(redis, keys, record_ttl=record_ttl)
        self.links = Links(redis, keys, record_ttl=record_ttl)

    @classmethod
    def from_settings(cls, redis: RedisClient, settings: QueueSettings) -> Queue:
        """The queue the settings name (key prefix, record retention)."""
        return cls(redis, Keys(settings.key_prefix), record_ttl=settings.record_ttl_seconds)

    async def replay_selected(
        self, selection: Selection
    ) -> tuple[list[tuple[str, ReplayOutcome]], bool]:
        """Replay what ``selection`` names (oldest first); also whether more matched than its
        limit. The one replay-by-filter of the admin API and ``lead-intake replay``."""
        found, more = await self.index.page(selection)
        chosen = [record.id for record in reversed(found)]
        return await self.records.replay_all(chosen), more


__all__ = [
    "Claimed",
    "DataLoss",
    "DeliveryKey",
    "Entry",
    "Links",
    "PersonUpdate",
    "Progress",
    "Queue",
    "QueueDepth",
    "Record",
    "Selection",
    "State",
    "StepMark",
    "Throttle",
    "Transition",
]
