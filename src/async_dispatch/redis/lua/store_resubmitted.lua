-- A resubmission was accepted: swap the old attempt's record for the new one, atomically.
-- The old id leaves every set without an outcome and joins the finished ids (a late
-- webhook for it is a duplicate); the new id is tracked with the same context, start,
-- deadline and trace context, the spec listing the earlier attempts, and its first check
-- planned.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2] last checks   KEYS[3] routine checks
-- KEYS[4]  deadlines (zset, _task.lua)   KEYS[5] finished ids (zset: id -> expiry)
-- ARGV[1]  old request id   ARGV[2] fencing token of the claim   ARGV[3] seconds to
--          remember the old id as finished
-- ARGV[4]  new request id   ARGV[5] context (JSON)   ARGV[6] started   ARGV[7] deadline
-- ARGV[8]  first check (server seconds, or 'inf')   ARGV[9] last-check time
-- ARGV[10] the new spec (JSON)   ARGV[11] the trace context (JSON, as store_add.lua's
--          ARGV[8]), or '' / absent: none
-- ARGV[12] the new record's MAC (redis/_integrity.py), or '' / absent: no fleet secret
--
-- Returns {1} if swapped; {0} (nothing changed) if the claim was lost, the task is not
-- being resubmitted, or the new id is tracked or finished already.

-- @include _task.lua

local old = task_load(KEYS[1], ARGV[1])
if not old or tostring(old.t or 0) ~= ARGV[2] or old.ph ~= 'sending' then
  return {0}
end
local rid = ARGV[4]
if redis.call('HEXISTS', KEYS[1], rid) == 1 or redis.call('ZSCORE', KEYS[5], rid) then
  return {0}
end
local t = redis.call('TIME')
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 2, 4 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
redis.call('ZADD', KEYS[5], tonumber(t[1]) + tonumber(ARGV[3]), ARGV[1])
-- A new record: polls, errors, token, lease and phase start at their defaults.
task_start(KEYS, rid, ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[11], ARGV[10], ARGV[12])
return {1}
