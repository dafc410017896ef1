-- The store's periodic round (run by every replica's reaper, a few times a second):
--   1. resolve every task whose deadline has passed as TIMED_OUT (server clock), with the
--      outcome built here from the task's hash;
--   2. turn every submit intent past its expiry (its replica stopped renewing it) into a
--      SUBMIT_UNCERTAIN outcome if the submit was sent, or drop it if it never was;
--   3. promote to a last check every routine check still waiting at its task's last-check
--      time (so that the last checks of a short budget are served first);
--   4. forget the finished ids whose time is up (store_resolve.lua says why a zset), and
--      the parked webhooks whose time is up (store_park.lua);
--   5. report what the replicas use as hints: tracked count, next deadline, next check.
--
-- KEYS[1] deadlines   KEYS[2] last checks   KEYS[3] routine checks   KEYS[4] outcome stream
-- KEYS[5] intents (zset: id -> expiry)   KEYS[6] intent start times (hash)
-- KEYS[7] last-check times (zset: id -> time)   KEYS[8] finished ids (zset: id -> expiry)
-- KEYS[9] tasks (hash, _task.lua)   KEYS[10] parked payloads (hash)
-- KEYS[11] parked ids (zset: id -> expiry)
-- KEYS[12] sent intents (hash: id -> the SUBMIT_UNCERTAIN outcome's error and context)
-- KEYS[13] rounds (hash: last, when the last round ran; hold, endings held until then)
-- ARGV[1] most endings per call   ARGV[2] seconds to remember a finished id
-- ARGV[3] seconds to hold endings after a gap   ARGV[4] the gap (s)
--
-- Returns {ended, now, tracked, next deadline or '', next check or '', intents,
--          outcome stream length}, times in server seconds.
--
-- Outcomes are JSON built by concatenation, so the stored context and status payload
-- (already JSON) go out byte for byte as they came in.

-- @include _task.lua

local limit, ttl = tonumber(ARGV[1]), ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
local ended = 0

-- The round's first write, and one Redis refuses when it is out of memory (maxmemory
-- with noeviction: HSET is denied, deletes are not). The round then fails before it ends
-- anything: a fleet whose checks cannot be recorded must not time its tasks out, nor
-- report its submits uncertain (issue #20 item 5).
local round = redis.call('HMGET', KEYS[13], 'last', 'hold', 'gap_from', 'gap_to')
redis.call('HSET', KEYS[13], 'last', stamp)
-- No round for longer than ARGV[4] (Redis stopped or unreachable, out of memory, or no
-- replica alive): nobody could check tasks or renew intents meanwhile. Hold the endings
-- for ARGV[3] seconds, so the replicas renew their intents and run the overdue last checks
-- before anything is timed out or reported uncertain.
local hold = tonumber(round[2]) or 0
local gap_from, gap_to = tonumber(round[3]), tonumber(round[4])
if round[1] and now - tonumber(round[1]) > tonumber(ARGV[4]) then
  hold = now + tonumber(ARGV[3])
  gap_from, gap_to = tonumber(round[1]), now
  redis.call('HSET', KEYS[13], 'hold', string.format('%.6f', hold), 'gap_from', round[1],
             'gap_to', stamp)
end
local ending = now >= hold
-- A task whose deadline fell in the last gap (or the hold after it) times out for want of
-- a fleet that could check it: its outcome says so, instead of "never checked".
local gap_error = 'null'
if gap_from then
  gap_error = cjson.encode({type = 'CoordinationError', message = string.format(
    'the fleet recorded no progress for %.1f s (Redis out of memory, unreachable or ' ..
    'stopped, or no replica running) before this deadline: no check could be made in time',
    gap_to - gap_from)})
end

local function nullable(value)
  if value == false or value == nil or value == '' then
    return 'null'
  end
  return value
end

local due_to_end = {}
if ending then
  due_to_end = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stamp, 'LIMIT', 0, limit)
end
for _, rid in ipairs(due_to_end) do
  local task = task_load(KEYS[9], rid)
  redis.call('ZREM', KEYS[1], rid)
  redis.call('ZREM', KEYS[2], rid)
  redis.call('ZREM', KEYS[3], rid)
  if task then
    redis.call('HDEL', KEYS[9], rid)
    redis.call('ZADD', KEYS[8], now + tonumber(ttl), rid)
    -- A resubmitted task's outcome lists every attempt (the spec keeps the earlier ones).
    local attempts = ''
    if task.sp and task.sp ~= '' then
      local ok, spec = pcall(cjson.decode, task.sp)  -- unreadable: the outcome goes without
      local earlier = ok and type(spec) == 'table' and spec['attempts']
      if type(earlier) == 'table' and #earlier > 0 then
        table.insert(earlier, rid)
        attempts = ',"attempts":' .. cjson.encode(earlier)
      end
    end
    local err = nullable(task.er)
    if err == 'null' and gap_from and task.d >= gap_from
        and task.d <= gap_to + tonumber(ARGV[3]) then
      err = gap_error
    end
    local outcome = '{"request_id":' .. cjson.encode(rid) .. ',"kind":"timed-out"'
      .. ',"status":' .. nullable(task.st) .. ',"error":' .. err
      .. ',"context":' .. nullable(task.c) .. ',"polls":' .. (task.p or 0)
      .. ',"elapsed":' .. string.format('%.6f', now - task.s)
      .. ',"final":true,"via":"deadline"' .. attempts
      -- The trace context goes out as a JSON string (what encode_outcome writes).
      .. ',"trace":' .. (task.tr and cjson.encode(task.tr) or 'null') .. '}'
    redis.call('XADD', KEYS[4], '*', 'o', outcome)
    ended = ended + 1
  end
end

local stale_intents = {}
if ending then
  stale_intents = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', stamp, 'LIMIT', 0, limit)
end
for _, id in ipairs(stale_intents) do
  local started = tonumber(redis.call('HGET', KEYS[6], id)) or now
  local sent = redis.call('HGET', KEYS[12], id)
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[12], id)
  -- Only a submit that went on the wire may have created a task (store_send_intent.lua);
  -- its intent carries the error and context members. No request id is known: none is
  -- made up.
  if sent then
    local outcome = '{"request_id":"","kind":"submit-uncertain","status":null,' .. sent
      .. ',"polls":0,"elapsed":' .. string.format('%.6f', now - started)
      .. ',"final":true,"via":"other"}'
    redis.call('XADD', KEYS[4], '*', 'o', outcome)
    ended = ended + 1
  end
end

for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', stamp, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[7], rid)
  -- Only a routine check that is waiting (not claimed: its score is not a lease) moves;
  -- a claimed one becomes a last check when its check ends (store_end_check.lua).
  local due = redis.call('ZSCORE', KEYS[3], rid)
  local task = due and task_load(KEYS[9], rid)
  if task and (task.l or 0) == 0 then
    redis.call('ZREM', KEYS[3], rid)
    redis.call('ZADD', KEYS[2], due, rid)
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', stamp)
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', stamp, 'LIMIT', 0, limit)) do
  redis.call('HDEL', KEYS[10], rid)
  redis.call('ZREM', KEYS[11], rid)
end

local function first_score(zset)
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  return first[2]
end
local next_due = ''
for _, zset in ipairs({KEYS[2], KEYS[3]}) do
  local score = first_score(zset)
  if score and (next_due == '' or tonumber(score) < tonumber(next_due)) then
    next_due = score
  end
end
return {ended, stamp, redis.call('ZCARD', KEYS[1]), first_score(KEYS[1]) or '', next_due,
        redis.call('ZCARD', KEYS[5]), redis.call('XLEN', KEYS[4])}
