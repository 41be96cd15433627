-- Replays pre-generated raw HTTP requests (one file, length-prefixed: "<bytes>\n<request>").
-- Usage: wrk ... -s replay.lua URL -- FILE MAX WRAP
--   FILE  the request file written by bench/payloads.py
--   MAX   stop after this many responses (the count bound; wrk -d is the time bound)
--   WRAP  "wrap": start over at the end of the file (baselines: duplicates do not matter);
--         "stop": stop when every request was sent once (the receiver: no duplicates).
-- Prints one line "BENCH_JSON {...}" with the figures when done.

-- Globals: done() reads next_index, statuses and exhausted from each thread (thread:get).
local requests = {}
local max_responses = 0
local wrap = false
local responses = 0
next_index = 1
statuses = {}
exhausted = false

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  max_responses = tonumber(args[2])
  wrap = args[3] == "wrap"
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local size = tonumber(string.sub(data, pos, nl - 1))
    requests[#requests + 1] = string.sub(data, nl + 1, nl + size)
    pos = nl + size + 1
  end
end

-- Before the run wrk calls request() once on the first thread's state to check the request
-- (script_verify_request) and never sends what it gets: answer that call without using up a
-- request of the file, or the file's first request would never be sent. (The bench runs wrk
-- with one thread, so this state is the one that sends.)
local verified = false

function request()
  if not verified then
    verified = true
    return requests[1]
  end
  if next_index > #requests then
    if wrap then
      next_index = 1
    else
      exhausted = true
      wrk.thread:stop()
      return requests[#requests]
    end
  end
  local req = requests[next_index]
  next_index = next_index + 1
  return req
end

function response(status, headers, body)
  responses = responses + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if responses >= max_responses then
    wrk.thread:stop()
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

local function status_json(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests_stats)
  local total = {}
  local sent = 0
  local ran_out = false
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
    sent = sent + (thread:get("next_index") - 1)
    ran_out = ran_out or thread:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "p999": %d, ' ..
    '"max": %d}, "statuses": %s, "sent": %d, "exhausted": %s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    status_json(total), sent, tostring(ran_out)))
end
