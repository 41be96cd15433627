"""Lua scripts, registered once per Redis client. Each touches only ``KEYS[]`` and ``ARGV[]``.

The record hash keeps its history as JSON lines in the ``history`` field so that appending an
event is a string concatenation inside the script (no JSON decoding in Lua).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# Delivery idempotency and the enqueue in one step: a repeated delivery finds the first
# submission's id under the idempotency key and nothing new is stored.
# KEYS: 1 stream, 2 record, 3 idempotency key (a placeholder when ARGV[7] is '')
# ARGV: 1 submission id, 2 source, 3 envelope JSON, 4 received_at, 5 record ttl,
#       6 first history event, 7 idempotency ttl ('' = no idempotency key), 8 delivery key kind
# Returns {1, stream entry id} when queued, {0, first submission id} for a repeat.
ENQUEUE = """
if ARGV[7] ~= '' then
  local first = redis.call('GET', KEYS[3])
  if first then return {0, first} end
  redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[7]))
end
redis.call('HSET', KEYS[2],
  'id', ARGV[1], 'source', ARGV[2], 'state', 'queued', 'received_at', ARGV[4],
  'updated_at', ARGV[4], 'attempts', '0', 'envelope', ARGV[3], 'history', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'delivery_key', ARGV[8]) end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
local entry = redis.call('XADD', KEYS[1], '*', 'sub', ARGV[1], 'source', ARGV[2])
return {1, entry}
"""

# Record a state change and, in the same step, whatever goes with it.
# KEYS: 1 record, 2 stream, 3 retry zset, 4 dead stream
# ARGV: 1 state, 2 history event (JSON), 3 ttl, 4 group ('' = no ack), 5 stream entry id,
#       6 retry due unix time ('' = none), 7 submission id, 8 dead-stream MINID ('' = no dead
#       entry), 9 source, 10 attempts increment, 11 number of extra field/value pairs, then the
#       pairs.
# Returns the record's attempt count, or -1 when it had expired or been erased (nothing is
# recreated then).
TRANSITION = """
local exists = redis.call('EXISTS', KEYS[1])
local attempts = -1
if exists == 1 then
  local nfields = tonumber(ARGV[11])
  local args = {'state', ARGV[1]}
  for i = 1, nfields * 2 do args[#args + 1] = ARGV[11 + i] end
  redis.call('HSET', KEYS[1], unpack(args))
  attempts = redis.call('HINCRBY', KEYS[1], 'attempts', tonumber(ARGV[10]))
  local history = redis.call('HGET', KEYS[1], 'history')
  if history and history ~= '' then history = history .. '\\n' .. ARGV[2] else history = ARGV[2] end
  redis.call('HSET', KEYS[1], 'history', history)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  if ARGV[6] ~= '' then
    redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), ARGV[7])
  end
  if ARGV[8] ~= '' then
    redis.call('XADD', KEYS[4], 'MINID', '~', ARGV[8], '*', 'sub', ARGV[7], 'source', ARGV[9])
  end
end
if ARGV[4] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[2], ARGV[5])
end
return attempts
"""

# Move retries that are due back into the work stream. Safe to run from every worker at once:
# a member is re-queued only by the caller whose ZREM removed it.
# KEYS: 1 retry zset, 2 stream; ARGV: 1 now (unix seconds), 2 max members to move
# Returns the number moved.
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, member in ipairs(due) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local sep = string.find(member, '|', 1, true)
    local id, source = member, ''
    if sep then id = string.sub(member, 1, sep - 1); source = string.sub(member, sep + 1) end
    redis.call('XADD', KEYS[2], '*', 'sub', id, 'source', source)
    moved = moved + 1
  end
end
return moved
"""


# A token bucket shared by every process: the Close pacing per endpoint group and the door's
# per-client and per-source limits. Also honours a shared pause key (set when Close said stop).
# KEYS: 1 bucket hash, 2 pause key (may be a placeholder that never exists)
# ARGV: 1 now (ms), 2 refill rate (tokens per second), 3 capacity, 4 cost
# Returns 0 when the tokens were taken, else the milliseconds to wait before trying again.
RATE_BUCKET = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return paused end
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = capacity; at = now end
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate / 1000) end
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return wait
"""

# Release a lock only if this holder still owns it (its token); 1 when released.
# KEYS: 1 lock; ARGV: 1 token
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Extend a lock this holder still owns; 1 when extended.
# KEYS: 1 lock; ARGV: 1 token, 2 ttl (ms)
EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Scripts:
    enqueue: AsyncScript
    transition: AsyncScript
    move_due: AsyncScript
    token_bucket: AsyncScript
    release_lock: AsyncScript
    extend_lock: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(
            enqueue=redis.register_script(ENQUEUE),
            transition=redis.register_script(TRANSITION),
            move_due=redis.register_script(MOVE_DUE),
            token_bucket=redis.register_script(RATE_BUCKET),
            release_lock=redis.register_script(RELEASE_LOCK),
            extend_lock=redis.register_script(EXTEND_LOCK),
        )
