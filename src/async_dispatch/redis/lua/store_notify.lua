-- Deliver a non-final outcome (an INPUT_REQUIRED notification) once per input request,
-- fleet-wide: the identity of the last input request reported is kept in the task's record,
-- so a poll on one replica and a webhook on another do not both report it.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  outcome stream
-- ARGV[1]  identity of the input request   ARGV[2]  outcome (JSON)   ARGV[3]  request id
--
-- Returns {1} if delivered, 0 if the task is gone or this request was already reported.

-- @include _task.lua

local task = task_load(KEYS[1], ARGV[3])
if not task or task.i == ARGV[1] then
  return {0}
end
task.i = ARGV[1]
task_save(KEYS[1], ARGV[3], task)
redis.call('XADD', KEYS[2], '*', 'o', ARGV[2])
return {1}
