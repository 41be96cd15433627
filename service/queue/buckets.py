"""Token buckets in Redis, shared by every process: the door's rate limits (per client, per
source) and the pacing of Close requests (``service/close/pacing.py``) use this one script.

A bucket is a hash (``tokens``, ``at``) refilled at ``rate`` tokens a second up to
``capacity``. A call takes between ``least`` and ``most`` whole tokens (as many as the bucket
holds), or none and says how long to wait for ``least``; a pause key, while it exists, makes
every taker wait for its remaining life.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.queue.lua import Script

BUCKET_LUA = """
-- Returns the tokens taken and, when none were, the milliseconds to wait first. ``pause``:
-- a key whose existence makes every taker wait, or false for a bucket that is never paused.
local function take_tokens(bucket, pause, now, rate, capacity, least, most)
  if pause then
    local paused = redis.call('PTTL', pause)
    if paused > 0 then return 0, paused end
  end
  local state = redis.call('HMGET', bucket, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then tokens = capacity; at = now end
  if now > at then tokens = math.min(capacity, tokens + (now - at) * rate / 1000) end
  local taken = math.min(most, math.floor(tokens))
  local wait = 0
  if taken >= least then
    tokens = tokens - taken
  else
    taken = 0
    wait = math.ceil((least - tokens) * 1000 / rate)
  end
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
  redis.call('PEXPIRE', bucket, math.ceil(capacity * 1000 / rate) + 1000)
  return taken, wait
end
"""
"""The bucket as a Lua function, for scripts that take tokens among other work."""


@dataclass(frozen=True, slots=True)
class BucketKeys:
    bucket: str | bytes
    pause: str | bytes
    """A key whose existence pauses the bucket (one that never exists, for none)."""


@dataclass(frozen=True, slots=True)
class BucketArgs:
    now_ms: int
    rate: float
    """Tokens per second."""
    capacity: float
    least: int
    """Take nothing unless at least this many tokens are there."""
    most: int
    """Take at most this many."""


TAKE = Script(
    BucketKeys,
    BucketArgs,
    """
local taken, wait = take_tokens(K.bucket, K.pause, tonumber(A.now_ms), tonumber(A.rate),
  tonumber(A.capacity), tonumber(A.least), tonumber(A.most))
return {taken, wait}
""",
    helpers=[BUCKET_LUA],
)
"""Returns ``{tokens taken, 0}``, or ``{0, milliseconds to wait before asking again}``."""


def no_pause(bucket: str) -> str:
    """A pause key for a bucket that is never paused (it is never set)."""
    return bucket + ":nopause"


def now_ms(now: float | None = None) -> int:
    return int((time.time() if now is None else now) * 1000)
