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

# Record a state change and, in the same step, whatever goes with it: acknowledging the entry,
# scheduling a retry, a dead letter, and the person's keys (lead cache, create marks, locks), so
# that one step of the worker is one round trip.
# KEYS: 1 record, 2 stream, 3 retry zset, 4 dead stream, 5.. the state indexes (ARGV[11] order),
#       then for each of the person's identities (ARGV[p], see below): lock, lead cache, create mark
# ARGV: 1 state, 2 history event (JSON), 3 ttl, 4 group ('' = no ack), 5 stream entry id,
#       6 retry due unix time ('' = none), 7 submission id (``id|source`` with a retry),
#       8 dead-stream MINID ('' = no dead entry), 9 source, 10 attempts increment,
#       11 state names, 12 number of extra field/value pairs, then the pairs; then, optionally,
#       from p = 13 + 2 * pairs: p number of identities (0 or absent = none), p+1 lead id to cache
#       ('' = none), p+2 its ttl (s), p+3 submission id to mark as creating ('' = none), p+4 the
#       mark's ttl (ms), p+5 '1' clears the create marks, p+6 lock token to release ('' = none:
#       released only where the lock still holds this token).
# Returns the record's attempt count, or -1 when it had expired or been erased (nothing is
# recreated then; the entry is still acknowledged and the person's keys are still written).
TRANSITION = (
    _STATE_KEY
    + """
local nfields = tonumber(ARGV[12])
local old = redis.call('HGET', KEYS[1], 'state')
local attempts = -1
if old and old ~= 'erased' then
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
local p = 13 + nfields * 2
local people = tonumber(ARGV[p] or '0') or 0
if people > 0 then
  local first = #KEYS - people * 3
  for i = 0, people - 1 do
    local at = first + i * 3
    local lock, lead, mark = KEYS[at + 1], KEYS[at + 2], KEYS[at + 3]
    if ARGV[p + 1] ~= '' then redis.call('SET', lead, ARGV[p + 1], 'EX', tonumber(ARGV[p + 2])) end
    if ARGV[p + 3] ~= '' then
      redis.call('SET', mark, ARGV[p + 3], 'PX', tonumber(ARGV[p + 4]))
    elseif ARGV[p + 5] == '1' then
      redis.call('DEL', mark)
    end
    if ARGV[p + 6] ~= '' and redis.call('GET', lock) == ARGV[p + 6] then
      redis.call('DEL', lock)
    end
  end
end
return attempts
"""
)

# A worker takes an entry: read its record and, unless it is gone or finished, mark it
# ``processing`` and count the attempt, in one step.
# KEYS: 1 record, 2 stream, 3.. the state indexes (ARGV[7] order)
# ARGV: 1 group, 2 stream entry id, 3 the history event up to the attempt number (the script
#       appends ``<attempts>}}``), 4 updated_at, 5 record ttl, 6 terminal states
#       (space-separated), 7 state names
# Returns {state} when the record is gone ('') or terminal: the entry is acknowledged and
# deleted, nothing else changes. Otherwise {'processing', field, value, ...}: the record after
# the change, without its history (the worker does not need it).
CLAIM = (
    _STATE_KEY
    + """
local old = redis.call('HGET', KEYS[1], 'state')
if not old or string.find(' ' .. ARGV[6] .. ' ', ' ' .. old .. ' ', 1, true) then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
  return {old or ''}
end
if not tonumber(redis.call('HGET', KEYS[1], 'attempts')) then
  redis.call('HSET', KEYS[1], 'attempts', '0')  -- a damaged count must not block the record
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local event = ARGV[3] .. attempts .. '}}'
local history = redis.call('HGET', KEYS[1], 'history')
if history and history ~= '' then history = history .. '\\n' .. event else history = event end
redis.call('HSET', KEYS[1], 'state', 'processing', 'updated_at', ARGV[4], 'history', history)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
if old ~= 'processing' then
  local id = redis.call('HGET', KEYS[1], 'id')
  local from = state_key(ARGV[7], 3, old)
  local to = state_key(ARGV[7], 3, 'processing')
  if from then redis.call('ZREM', from, id) end
  if to then
    redis.call('ZADD', to, tonumber(redis.call('HGET', KEYS[1], 'received_at')) or 0, id)
    redis.call('EXPIRE', to, tonumber(ARGV[5]))
  end
end
local raw = redis.call('HGETALL', KEYS[1])
local out = {'processing'}
for i = 1, #raw, 2 do
  if raw[i] ~= 'history' then
    out[#out + 1] = raw[i]
    out[#out + 1] = raw[i + 1]
  end
end
return out
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


# A token bucket shared by every process: the door's per-client and per-source limits (the
# Close pacing takes its tokens several at a time with TAKE_TOKENS, below, from buckets of the
# same layout). Also honours a shared pause key.
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

# Close request tokens for one process, several at a time: up to ARGV[4] tokens from the shared
# bucket (as many as it holds, at least one), unless the group is paused. The process spends them
# at once or within a short lease; see ``service/close/pacing.py`` for why the limit still holds.
# KEYS: 1 bucket hash, 2 pause key
# ARGV: 1 now (ms), 2 refill rate (tokens per second), 3 capacity, 4 most tokens wanted
# Returns {tokens taken, 0}, or {0, milliseconds to wait before asking again}.
TAKE_TOKENS = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused} end
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then tokens = capacity; at = now end
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate / 1000) end
local taken = math.min(want, math.floor(tokens))
local wait = 0
if taken >= 1 then
  tokens = tokens - taken
else
  taken = 0
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {taken, wait}
"""

# Take every lock of one person at once, or none: 1 when all were free. With them, read what
# the worker needs to know about the person, as it is while the locks are held.
# KEYS: the n locks, then the n lead cache keys, then the n create marks (same order)
# ARGV: 1 token, 2 ttl (ms), 3 n
# Returns {0} when another holder has one of the locks (nothing taken), else
# {1, cached lead id or '' (n of them), then per mark: owner or '', milliseconds left}.
TAKE_LOCKS = """
local n = tonumber(ARGV[3])
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {0} end
end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[1], 'PX', tonumber(ARGV[2])) end
local out = {1}
for i = 1, n do out[#out + 1] = redis.call('GET', KEYS[n + i]) or '' end
for i = 1, n do
  local owner = redis.call('GET', KEYS[2 * n + i])
  if owner then
    out[#out + 1] = owner
    out[#out + 1] = redis.call('PTTL', KEYS[2 * n + i])
  else
    out[#out + 1] = ''
    out[#out + 1] = 0
  end
end
return out
"""

# Release the locks this holder still owns (its token); returns how many were released.
# KEYS: the locks; ARGV: 1 token
RELEASE_LOCK = """
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then released = released + redis.call('DEL', KEYS[i]) end
end
return released
"""

# Extend the locks this holder still owns; returns how many were extended.
# KEYS: the locks; ARGV: 1 token, 2 ttl (ms)
EXTEND_LOCK = """
local extended = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    extended = extended + redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
  end
end
return extended
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
    claim: AsyncScript
    move_due: AsyncScript
    token_bucket: AsyncScript
    take_tokens: AsyncScript
    take_locks: AsyncScript
    release_lock: AsyncScript
    extend_lock: AsyncScript
    replay: AsyncScript
    erase: AsyncScript

    @classmethod
    def register(cls, redis: RedisClient) -> Scripts:
        return cls(
            enqueue=redis.register_script(ENQUEUE),
            transition=redis.register_script(TRANSITION),
            claim=redis.register_script(CLAIM),
            move_due=redis.register_script(MOVE_DUE),
            token_bucket=redis.register_script(RATE_BUCKET),
            take_tokens=redis.register_script(TAKE_TOKENS),
            take_locks=redis.register_script(TAKE_LOCKS),
            release_lock=redis.register_script(RELEASE_LOCK),
            extend_lock=redis.register_script(EXTEND_LOCK),
            replay=redis.register_script(REPLAY),
            erase=redis.register_script(ERASE),
        )
