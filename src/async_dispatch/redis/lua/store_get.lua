-- Read one tracked task (RedisStore.get), in the order of store_claim.lua's reply.
--
-- KEYS[1] tasks (hash, _task.lua)   ARGV[1] request id
-- Returns {1, token, ctx, started, deadline, polls, errors, last_input, status, err,
-- trace, spec, phase, MAC, phase MAC}, or {0} when the task is not tracked.

-- @include _task.lua

local task = task_load(KEYS[1], ARGV[1])
if not task then
  return {0}
end
local out = {1}
for _, value in ipairs(task_reply(task)) do
  out[#out + 1] = value
end
return out
