"""The marker of this prefix's data in Redis: how a Redis that came back empty is told apart
from one that never held anything.

The consumer group and a marker (``Keys.marker``: a random id and when it was made) are
created together by one script, the only place that creates the group. Each process
remembers the marker it saw. When Redis comes back without it, and without the group (a
restart without persistence, a failover to an empty replica, a FLUSHALL), everything that
was accepted before is gone: the script records the loss (``Keys.data_lost``: when, and the
marker that was lost) for every process to show, the process that found it logs CRITICAL and
counts it (``on_loss``), and a new marker starts. A process that finds a marker other than
its own learns of a loss another process recorded. A process that starts against an empty
Redis cannot know what was there before: it starts the marker (a first deployment looks the
same), and says nothing.

Every call refreshes the marker's TTL; readiness probes and the workers' reads call it often,
so it only expires when nothing ran for that long.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.keys import DATA_LOST_TTL_SECONDS, GROUP, MARKER_TTL_SECONDS, Keys
from service.queue.connection import RedisClient
from service.queue.lua import Script

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DataLoss:
    """Redis came back without this prefix's data."""

    at: float
    """When the loss was found (the data went some time before: the restart)."""
    marker: str
    """The marker that was lost."""


@dataclass(frozen=True, slots=True)
class _EnsureKeys:
    stream: str
    marker: str
    lost: str


@dataclass(frozen=True, slots=True)
class _EnsureArgs:
    group: str
    known: str
    """The marker this process saw last ('' for none yet)."""
    new_marker: str
    now: float
    marker_ttl: int
    lost_ttl: int


# Returns {marker id, 1 when this call recorded a loss else 0}.
_ENSURE = Script(
    _EnsureKeys,
    _EnsureArgs,
    """
local made = redis.pcall('XGROUP', 'CREATE', K.stream, A.group, '0', 'MKSTREAM')
local group_was_missing = true
if type(made) == 'table' and made.err then
  if string.find(made.err, 'BUSYGROUP', 1, true) == nil then return redis.error_reply(made.err) end
  group_was_missing = false
end
local marker = redis.call('HGET', K.marker, 'id')
local lost = 0
if not marker then
  marker = A.new_marker
  redis.call('HSET', K.marker, 'id', marker, 'created_at', A.now)
  if A.known ~= '' and group_was_missing then
    redis.call('SET', K.lost, cjson.encode({at = tonumber(A.now), marker = A.known}),
      'EX', tonumber(A.lost_ttl))
    lost = 1
  end
end
redis.call('EXPIRE', K.marker, tonumber(A.marker_ttl))
return {marker, lost}
""",
)


class DataMarker:
    """This process's view of the marker; :meth:`ensure` also creates the consumer group."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.known: str | None = None
        self.on_loss: Callable[[DataLoss], None] | None = None
        """Called when this process records a loss (the metric)."""
        self._ensure = _ENSURE.bind(redis)

    async def ensure(self) -> None:
        """Create the stream and consumer group if missing, refresh the marker, and find out
        whether Redis lost the data since the last call."""
        now = time.time()
        marker, lost = await self._ensure(
            _EnsureKeys(self.keys.stream, self.keys.marker, self.keys.data_lost),
            _EnsureArgs(
                group=GROUP,
                known=self.known or "",
                new_marker=secrets.token_hex(8),
                now=now,
                marker_ttl=MARKER_TTL_SECONDS,
                lost_ttl=DATA_LOST_TTL_SECONDS,
            ),
        )
        marker = str(marker)
        if int(lost):
            logger.critical(
                "Redis came back WITHOUT its data (stream, consumer group and marker %s gone): "
                "every submission accepted before and not yet delivered is lost, and so is the "
                "memory of deliveries and leads. Redis needs persistence (AOF on); see "
                "docs/operations.md",
                self.known,
            )
            if self.on_loss is not None:
                self.on_loss(DataLoss(now, self.known or ""))
        elif self.known is not None and marker != self.known:
            logger.warning("Redis lost its data (recorded by another process, marker %s)", marker)
        self.known = marker

    async def last_loss(self) -> DataLoss | None:
        """The last loss recorded (by any process), while it is kept."""
        raw: Any = await self.redis.get(self.keys.data_lost)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return DataLoss(float(data["at"]), str(data.get("marker", "")))
        except (ValueError, KeyError, TypeError):
            return None
