-- The store's periodic round (run by every replica's reaper, a few times a second):
--   1. resolve every task whose deadline has passed as TIMED_OUT (server clock), with the
--      outcome built here from the task's hash;
--   2. turn every submit intent older than its timeout into a SUBMIT_UNCERTAIN outcome: a
--      replica died between recording the intent and tracking the task it submitted;
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
-- ARGV[1] most endings per call   ARGV[2] seconds to remember a finished id
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

local function nullable(value)
  if value == false or value == nil or value == '' then
    return 'null'
  end
  return value
end

for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stamp, 'LIMIT', 0, limit)) do
  local task = task_load(KEYS[9], rid)
  redis.call('ZREM', KEYS[1], rid)
  redis.call('ZREM', KEYS[2], rid)
  redis.call('ZREM', KEYS[3], rid)
  if task then
    redis.call('HDEL', KEYS[9], rid)
    redis.call('ZADD', KEYS[8], now + tonumber(ttl), rid)
    local outcome = '{"request_id":' .. cjson.encode(rid) .. ',"kind":"timed-out"'
      .. ',"status":' .. nullable(task.st) .. ',"error":' .. nullable(task.er)
      .. ',"context":' .. nullable(task.c) .. ',"polls":' .. (task.p or 0)
      .. ',"elapsed":' .. string.format('%.6f', now - task.s)
      .. ',"final":true,"via":"deadline"'
      -- The trace context goes out as a JSON string (what encode_outcome writes).
      .. ',"trace":' .. (task.tr and cjson.encode(task.tr) or 'null') .. '}'
    redis.call('XADD', KEYS[4], '*', 'o', outcome)
    ended = ended + 1
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', stamp, 'LIMIT', 0, limit)) do
  local started = tonumber(redis.call('HGET', KEYS[6], id)) or now
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  local outcome = '{"request_id":' .. cjson.encode(id) .. ',"kind":"submit-uncertain"'
    .. ',"status":null,"error":{"type":"SubmitUncertainError","message":'
    .. cjson.encode('a replica died while submitting: the task may exist at the service; '
                    .. 'check before resubmitting') .. '}'
    .. ',"context":null,"polls":0,"elapsed":' .. string.format('%.6f', now - started)
    .. ',"final":true,"via":"other"}'
  redis.call('XADD', KEYS[4], '*', 'o', outcome)
  ended = ended + 1
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
