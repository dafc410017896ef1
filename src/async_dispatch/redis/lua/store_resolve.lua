-- Give a task its final outcome, if nobody did first: whoever resolves first wins, the
-- rest are no-ops. The task leaves every set, a 'finished' marker (with a TTL) answers
-- late or repeated webhooks, and the outcome goes onto the outcome stream.
--
-- KEYS[1]  the task's hash   KEYS[2]  last checks   KEYS[3]  routine checks
-- KEYS[4]  deadlines          KEYS[5]  the finished marker of this id   KEYS[6]  outcome stream
-- ARGV[1]  request id   ARGV[2] '1' if fenced (a poll: only under the caller's claim)
-- ARGV[3]  fencing token of the claim (when fenced)   ARGV[4] outcome (JSON)
-- ARGV[5]  seconds to keep the finished marker
--
-- Returns {1, entry id} if this call resolved the task, {0} otherwise.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0}
end
if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[3] then
  return {0}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SET', KEYS[5], '1', 'EX', ARGV[5])
local entry = redis.call('XADD', KEYS[6], '*', 'o', ARGV[4])
return {1, entry}
