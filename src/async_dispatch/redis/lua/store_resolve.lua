-- Give a task its final outcome, if nobody did first: whoever resolves first wins, the
-- rest are no-ops. The task leaves every set, its id joins the finished ids (until
-- `ARGV[5]` seconds from now) to answer late or repeated webhooks, and the outcome goes
-- onto the outcome stream.
--
-- The finished ids are one zset without a TTL, pruned by store_expire.lua, not a key
-- per id with a TTL: `volatile-*` eviction policies evict keys with a TTL first, and an
-- evicted marker would let a re-tracked id get a second final outcome.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  last checks   KEYS[3]  routine checks
-- KEYS[4]  deadlines          KEYS[5]  finished ids (zset: id -> expiry)   KEYS[6]  outcome stream
-- ARGV[1]  request id   ARGV[2] '1' if fenced (a poll: only under the caller's claim)
-- ARGV[3]  fencing token of the claim (when fenced)   ARGV[4] outcome (JSON)
-- ARGV[5]  seconds to remember the id as finished
-- ARGV[6]  the outcome's MAC (redis/_integrity.py), or '' / absent without a fleet secret
--
-- Returns {1, entry id} if this call resolved the task, {0} otherwise.

-- @include _task.lua

local task = task_load(KEYS[1], ARGV[1])
if not task then
  return {0}
end
if ARGV[2] == '1' and tostring(task.t or 0) ~= ARGV[3] then
  return {0}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[5], tonumber(t[1]) + tonumber(ARGV[5]), ARGV[1])
local entry
if (ARGV[6] or '') ~= '' then
  entry = redis.call('XADD', KEYS[6], '*', 'o', ARGV[4], 'm', ARGV[6])
else
  entry = redis.call('XADD', KEYS[6], '*', 'o', ARGV[4])
end
return {1, entry}
