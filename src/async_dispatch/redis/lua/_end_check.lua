-- Prepended to the scripts that end claimed checks (the line `-- @include _end_check.lua`,
-- after `-- @include _task.lua`, is replaced by this file when RedisConnection loads a
-- script): store_end_check.lua, and store_claim.lua, which carries the ends a replica
-- still owes so that they cost no round trip of their own (RedisStore.end_check).
--
-- Each end is 11 arguments (END_ARGS):
--   request id, fencing token of the claim, polls, errors, last error (JSON or ''),
--   status ('' = keep), next check (server seconds, or 'inf': none, the deadline decides),
--   the task's phase from now on: '' (checked), or 'wait' (the attempt failed: at the next
--   check's time the task is resubmitted instead), then the MACs of the status, of the
--   error and of a 'wait' phase (redis/_integrity.py; '' without a fleet secret)
--
-- An end is written ONLY if the caller's fencing token is still the task's (a replica
-- whose lease ran out and was claimed again elsewhere writes nothing: its late write is a
-- no-op).

-- End the checks whose arguments start at `args[first]`; `tasks`, `last` and `due` are
-- the fleet's keys (_task.lua). Returns how many were written.
local END_ARGS = 11

local function end_checks(tasks, last, due, args, first)
  local written = 0
  for i = first, #args - END_ARGS + 1, END_ARGS do
    local rid = args[i]
    local task = task_load(tasks, rid)
    if task and tostring(task.t or 0) == args[i + 1] then
      task.p, task.e = tonumber(args[i + 2]), tonumber(args[i + 3])
      task.l, task.b = nil, nil  -- no longer claimed (absent means 0: _task.lua)
      task.er = args[i + 4] ~= '' and args[i + 4] or nil
      task.em = text_or_nil(args[i + 9])
      -- Absent means '' (_task.lua): a check that ends plainly clears a 'wait' left before.
      task.ph = args[i + 7] ~= '' and args[i + 7] or nil
      task.pm = text_or_nil(args[i + 10])
      if args[i + 5] ~= '' then
        task.st = args[i + 5]
        task.sm = text_or_nil(args[i + 8])
      end
      task_save(tasks, rid, task)
      redis.call('ZREM', last, rid)
      redis.call('ZREM', due, rid)
      local next_check = args[i + 6]
      if next_check ~= 'inf' then
        -- A check planned at or after the task's last-check time is its last one.
        local is_last = task.ld and tonumber(next_check) >= task.ld
        redis.call('ZADD', is_last and last or due, next_check, rid)
      end
      written = written + 1
    end
  end
  return written
end
