-- End a claimed check: record the task's state and plan its next check, ONLY if the
-- caller's fencing token is still the task's (a replica whose lease ran out and was
-- claimed again elsewhere writes nothing: its late write is a no-op).
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  last checks (zset)   KEYS[3]  routine checks
-- ARGV[1]  request id        ARGV[2]  fencing token of the claim
-- ARGV[3]  polls   ARGV[4] errors   ARGV[5] last error (JSON or '')   ARGV[6] status ('' = keep)
-- ARGV[7]  next check (server seconds, or 'inf': none, the deadline decides)
-- ARGV[8]  the task's phase from now on: '' (checked), or 'wait' (the attempt failed: at
--          the next check's time the task is resubmitted instead); absent means ''
-- ARGV[9]  the status's MAC   ARGV[10] the error's MAC   ARGV[11] the 'wait' phase's MAC
--          (redis/_integrity.py): '' or absent without a fleet secret
--
-- Returns {1} if written, 0 if the token no longer matches (or the task is gone).

-- @include _task.lua

local task = task_load(KEYS[1], ARGV[1])
if not task or tostring(task.t or 0) ~= ARGV[2] then
  return {0}
end
task.p, task.e = tonumber(ARGV[3]), tonumber(ARGV[4])
task.l, task.b = nil, nil  -- no longer claimed (absent means 0: _task.lua)
task.er = ARGV[5] ~= '' and ARGV[5] or nil
task.em = text_or_nil(ARGV[10])
-- Absent means '' (_task.lua): a check that ends plainly clears a 'wait' left before.
task.ph = (ARGV[8] or '') ~= '' and ARGV[8] or nil
task.pm = text_or_nil(ARGV[11])
if ARGV[6] ~= '' then
  task.st = ARGV[6]
  task.sm = text_or_nil(ARGV[9])
end
task_save(KEYS[1], ARGV[1], task)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[7] ~= 'inf' then
  -- A check planned at or after the task's last-check time is its last one.
  local last = task.ld and tonumber(ARGV[7]) >= task.ld
  redis.call('ZADD', last and KEYS[2] or KEYS[3], ARGV[7], ARGV[1])
end
return {1}
