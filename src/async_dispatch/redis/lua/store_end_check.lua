-- End a claimed check: record the task's state and plan its next check, ONLY if the
-- caller's fencing token is still the task's (a replica whose lease ran out and was
-- claimed again elsewhere writes nothing: its late write is a no-op).
--
-- KEYS[1]  the task's hash   KEYS[2]  last checks (zset)   KEYS[3]  routine checks (zset)
-- ARGV[1]  request id        ARGV[2]  fencing token of the claim
-- ARGV[3]  polls   ARGV[4] errors   ARGV[5] last error (JSON or '')   ARGV[6] status ('' = keep)
-- ARGV[7]  next check (server seconds, or 'inf': none, the deadline decides)
-- ARGV[8]  the task's phase from now on: '' (checked), or 'wait' (the attempt failed: at
--          the next check's time the task is resubmitted instead); absent means ''
--
-- Returns {1} if written, 0 if the token no longer matches (or the task is gone).

local token = redis.call('HGET', KEYS[1], 'token')
if token ~= ARGV[2] then
  return {0}
end
redis.call('HSET', KEYS[1], 'polls', ARGV[3], 'errors', ARGV[4], 'err', ARGV[5],
           'lease', 0, 'phase', ARGV[8] or '')
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'status', ARGV[6])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[7] ~= 'inf' then
  -- A check planned at or after the task's last-check time is its last one.
  local last_due = tonumber(redis.call('HGET', KEYS[1], 'last_due') or '')
  local last = last_due and tonumber(ARGV[7]) >= last_due
  redis.call('ZADD', last and KEYS[2] or KEYS[3], ARGV[7], ARGV[1])
end
return {1}
