-- Track a task, and/or end a submit: the one script behind RedisStore.add() and
-- RedisStore.end_submit(), so a submit's task appears and its intent disappears atomically
-- (a replica dying in between can leave neither a lost task nor a stale intent).
--
-- KEYS[1]  tasks (hash: id -> record)          KEYS[5]  intents (zset: id -> expiry)
-- KEYS[2]  last checks (zset: id -> due)        KEYS[6]  intent start times (hash)
-- KEYS[3]  routine checks (zset: id -> due)     KEYS[7]  parked webhooks (hash: id -> payload)
-- KEYS[4]  deadlines (zset, _task.lua)         KEYS[8]  parked ids (zset: id -> expiry)
-- KEYS[9]  finished ids (zset: id -> expiry)
-- KEYS[10] sent intents (hash: id -> what a SUBMIT_UNCERTAIN would say)
-- ARGV[1]  request id, or '' when a submit failed (then only the intent is dropped)
-- ARGV[2]  context (JSON)   ARGV[3] started   ARGV[4] deadline   (server seconds)
-- ARGV[5]  first check (server seconds, or 'inf')
-- ARGV[6]  when the last check before the deadline falls due (server seconds): a check
--          due then or later is the last one
-- ARGV[7]  intent id to drop, or ''
-- ARGV[8]  the task's trace context (one JSON object of W3C Trace Context headers), or
--          '' or absent: none
-- ARGV[9]  the task's spec (`TaskSpec.to_json()`: what a resubmission or a typed output
--          needs, never a secret), or '' / absent for none
-- ARGV[10] the record's MAC (redis/_integrity.py), or '' / absent without a fleet secret
--
-- Returns {added (0/1), parked payload or ''}.

-- @include _task.lua

if ARGV[7] ~= '' then
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('HDEL', KEYS[6], ARGV[7])
  redis.call('HDEL', KEYS[10], ARGV[7])
end
local rid = ARGV[1]
if rid == '' then
  return {0, ''}
end
local parked = ''
if ARGV[7] ~= '' then
  -- A webhook that beat the submit's answer: hand it over, once.
  parked = redis.call('HGET', KEYS[7], rid) or ''
  if parked ~= '' then
    redis.call('HDEL', KEYS[7], rid)
    redis.call('ZREM', KEYS[8], rid)
  end
end
-- Tracked already, or finished recently (its one final outcome exists): nothing to add.
if redis.call('HEXISTS', KEYS[1], rid) == 1 or redis.call('ZSCORE', KEYS[9], rid) then
  return {0, parked}
end
-- Polls, errors, token and lease start at 0, the phase at '' (no resubmission planned).
task_start(KEYS, rid, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[8], ARGV[9], ARGV[10])
return {1, parked}
