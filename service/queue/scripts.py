"""Lua scripts, registered once per Redis client. Each touches only ``KEYS[]`` and ``ARGV[]``.

The record hash keeps its history as JSON lines in the ``history`` field so that appending an
event is a string concatenation inside the script (no JSON decoding in Lua).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.commands.core import AsyncScript

from service.queue.connection import RedisClient

# Finding a state's index key among KEYS: ARGV[names] lists the states in KEYS order.
_STATE_KEY = """
local function state_key(names, first, name)
  local i = 0
  for s in string.gmatch(names, '%S+') do
    if s == name then return KEYS[first + i] end
    i = i + 1
  end
  return nil
end
"""

# Delivery idempotency and the enqueue in one step: a repeated delivery finds the first
# submission's id under the idempotency key and nothing new is stored. Also stores submissions
# refused at the door (state ``rejected``, never added to the stream).
# KEYS: 1 stream, 2 record, 3 idempotency key (a placeholder when ARGV[7] is ''),
#       4 index of the initial state
# ARGV: 1 submission id, 2 source, 3 envelope JSON, 4 received_at, 5 record ttl,
#       6 history (JSON lines), 7 idempotency ttl ('' = no idempotency key), 8 delivery key kind,
#       9 initial state ('queued' adds the stream entry), 10 reason ('' = none)
# Returns {1, stream entry id or ''} when stored, {0, first submission id} for a repeat.
ENQUEUE = """
if ARGV[7] ~= '' then
  local first = redis.call('GET', KEYS[3])
  if first then return {0, first} end
  redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[7]))
end
redis.call('HSET', KEYS[2],
  'id', ARGV[1], 'source', ARGV[2], 'state', ARGV[9], 'received_at', ARGV[4],
  'updated_at', ARGV[4], 'attempts', '0', 'envelope', ARGV[3], 'history', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'delivery_key', ARGV[8]) end
if ARGV[10] ~= '' then redis.call('HSET', KEYS[2], 'reason', ARGV[10]) end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[4], tonumber(ARGV[4]), ARGV[1])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
local entry = ''
if ARGV[9] == 'queued' then
  entry = redis.call('XADD', KEYS[1], '*', 'sub', ARGV[1], 'source', ARGV[2])
end
return {1, entry}
"""

# Record a state change and, in the same step, whatever goes with it.
# KEYS: 1 record, 2 stream, 3 retry zset, 4 dead stream, 5.. the state indexes (ARGV[11] order)
# ARGV: 1 state, 2 history event (JSON), 3 ttl, 4 group ('' = no ack), 5 stream entry id,
#       6 retry due unix time ('' = none), 7 submission id (``id|source`` with a retry),
#       8 dead-stream MINID ('' = no dead entry), 9 source, 10 attempts increment,
#       11 state names, 12 number of extra field/value pairs, then the pairs.
# Returns the record's attempt count, or -1 when it had expired or been erased (nothing is
# recreated then; the entry is still acknowledged).
TRANSITION = (
    _STATE_KEY
    + """
local old = redis.call('HGET', KEYS[1], 'state')
local attempts = -1
if old and old ~= 'erased' then
  local nfields = tonumber(ARGV[12])
  local args = {'state', ARGV[1]}
  for i = 1, nfields * 2 do args[#args + 1] = ARGV[12 + i] end
  redis.call('HSET', KEYS[1], unpack(args))
  if not tonumber(redis.call('HGET', KEYS[1], 'attempts')) then
    redis.call('HSET', KEYS[1], 'attempts', '0')  -- a damaged count must not block the record
  end
  attempts = redis.call('HINCRBY', KEYS[1], 'attempts', tonumber(ARGV[10]))
  local history = redis.call('HGET', KEYS[1], 'history')
  if history and history ~= '' then history = history .. '\\n' .. ARGV[2] else history = ARGV[2] end
  redis.call('HSET', KEYS[1], 'history', history)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  if old ~= ARGV[1] then
    local id = redis.call('HGET', KEYS[1], 'id')
    local from = state_key(ARGV[11], 5, old)
    local to = state_key(ARGV[11], 5, ARGV[1])
    if from then redis.call('ZREM', from, id) end
    if to then
      local score = tonumber(redis.call('HGET', KEYS[1], 'received_at')) or 0
      redis.call('ZADD', to, score, id)
      redis.call('EXPIRE', to, tonumber(ARGV[3]))
    end
  end
  if ARGV[6] ~= '' then
    redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), ARGV[7])
  end
  if ARGV[8] ~= '' then
    local dead = redis.call('XADD', KEYS[4], 'MINID', '~', ARGV[8], '*',
      'sub', ARGV[7], 'source', ARGV[9])
    redis.call('HSET', KEYS[1], 'dead_entry', dead)
  end
end
if ARGV[4] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[2], ARGV[5])
end
return attempts
"""
)

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


# Replay a finished submission: back to ``queued`` with a fresh attempt budget, its progress
# cleared (so the lookup runs again: a created lead is found, not made twice), its dead-letter
# entry removed, and a new stream entry.
# KEYS: 1 record, 2 stream, 3 dead stream, 4.. the state indexes (ARGV[6] order)
# ARGV: 1 submission id, 2 now, 3 history event, 4 record ttl, 5 replayable states
#       (space-separated), 6 state names
# Returns 1 when replayed, 0 when the submission is not finished (in progress), 2 when erased,
# -1 when unknown.
REPLAY = (
    _STATE_KEY
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'erased' then return 2 end
if not string.find(' ' .. ARGV[5] .. ' ', ' ' .. state .. ' ', 1, true) then return 0 end
local lead = redis.call('HGET', KEYS[1], 'lead_id')
if lead and lead ~= '' then redis.call('HSET', KEYS[1], 'previous_lead_id', lead) end
local dead = redis.call('HGET', KEYS[1], 'dead_entry')
if dead then redis.call('XDEL', KEYS[3], dead) end
redis.call('HDEL', KEYS[1], 'lead_id', 'lead_created', 'lead_url', 'matched_via', 'candidates',
  'contact_done', 'contact_added', 'note_id', 'create_started_at', 'next_attempt_at',
  'dead_entry')
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', '0', 'replayed_at', ARGV[2],
  'updated_at', ARGV[2])
local history = redis.call('HGET', KEYS[1], 'history') or ''
redis.call('HSET', KEYS[1], 'history', history .. '\\n' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local from = state_key(ARGV[6], 4, state)
local to = state_key(ARGV[6], 4, 'queued')
if from then redis.call('ZREM', from, ARGV[1]) end
redis.call('ZADD', to, tonumber(redis.call('HGET', KEYS[1], 'received_at')), ARGV[1])
redis.call('EXPIRE', to, tonumber(ARGV[4]))
local source = redis.call('HGET', KEYS[1], 'source') or ''
redis.call('XADD', KEYS[2], '*', 'sub', ARGV[1], 'source', source)
return 1
"""
)

# Erase a submission's personal data: the record becomes a tombstone (id, source, times, one
# history event), it leaves its state's index for the ``erased`` one, and its dead-letter entry
# goes. A worker that meets the tombstone acknowledges the entry and does nothing else.
# KEYS: 1 record, 2 dead stream, 3.. the state indexes (ARGV[4] order)
# ARGV: 1 submission id, 2 now, 3 record ttl, 4 state names, 5 history event
# Returns 1 when erased, 0 when it already was, -1 when unknown.
ERASE = (
    _STATE_KEY
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'erased' then return 0 end
local source = redis.call('HGET', KEYS[1], 'source') or ''
local received = redis.call('HGET', KEYS[1], 'received_at') or ARGV[2]
local dead = redis.call('HGET', KEYS[1], 'dead_entry')
if dead then redis.call('XDEL', KEYS[2], dead) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'source', source, 'state', 'erased',
  'received_at', received, 'updated_at', ARGV[2], 'erased_from', state, 'attempts', '0',
  'history', ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local from = state_key(ARGV[4], 3, state)
local to = state_key(ARGV[4], 3, 'erased')
if from then redis.call('ZREM', from, ARGV[1]) end
redis.call('ZADD', to, tonumber(received), ARGV[1])
redis.call('EXPIRE', to, tonumber(ARGV[3]))
return 1
"""
)


@dataclass(frozen=True, slots=True)
class Scripts:
    enqueue: AsyncScript
    transition: AsyncScript
    move_due: AsyncScript
    token_bucket: AsyncScript
    release_lock: AsyncScript
    extend_lock: AsyncScript
    replay: AsyncScript
    erase: AsyncScript

    @classmethod
    def register(cls, redis: RedisClient) -> Scripts:
        return cls(
            enqueue=redis.register_script(ENQUEUE),
            transition=redis.register_script(TRANSITION),
            move_due=redis.register_script(MOVE_DUE),
            token_bucket=redis.register_script(RATE_BUCKET),
            release_lock=redis.register_script(RELEASE_LOCK),
            extend_lock=redis.register_script(EXTEND_LOCK),
            replay=redis.register_script(REPLAY),
            erase=redis.register_script(ERASE),
        )
