-- Deliver a non-final outcome (an INPUT_REQUIRED notification) once per input request,
-- fleet-wide: the identity of the last input request reported is kept in the task's record
-- ('i'), so a poll on one replica and a webhook on another do not both report it; and every
-- one reported (the SHA-1 of the last 32, 'ix'), so a stale replica whose reading is older
-- (it stalled mid-check) cannot report an earlier request again after a newer one, nor
-- make the newer one look new once more.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  outcome stream
-- ARGV[1]  identity of the input request   ARGV[2]  outcome (JSON)   ARGV[3]  request id
-- ARGV[4]  the outcome's MAC (redis/_integrity.py), or '' / absent without a fleet secret
--
-- Returns {1} if delivered, 0 if the task is gone or this request was already reported.

-- @include _task.lua

local task = task_load(KEYS[1], ARGV[3])
if not task or task.i == ARGV[1] then
  return {0}
end
local digest = redis.sha1hex(ARGV[1])
local inputs = task.ix or ''
if string.find(inputs, digest, 1, true) then
  return {0}
end
inputs = inputs .. digest .. ' '
if #inputs > 41 * 32 then
  inputs = string.sub(inputs, #inputs - 41 * 32 + 1)
end
task.i = ARGV[1]
task.ix = inputs
task_save(KEYS[1], ARGV[3], task)
if (ARGV[4] or '') ~= '' then
  redis.call('XADD', KEYS[2], '*', 'o', ARGV[2], 'm', ARGV[4])
else
  redis.call('XADD', KEYS[2], '*', 'o', ARGV[2])
end
return {1}
