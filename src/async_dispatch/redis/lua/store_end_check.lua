-- End claimed checks: record each task's state and plan its next check, ONLY if the
-- caller's fencing token is still the task's (a replica whose lease ran out and was
-- claimed again elsewhere writes nothing: its late write is a no-op).
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  last checks (zset)   KEYS[3]  routine checks
-- ARGV     one or more ends, 11 arguments each (see _end_check.lua)
--
-- Returns {how many were written}. A replica sends its ends here only when no claim of
-- its own carried them soon enough (store_claim.lua carries them too).

-- @include _task.lua
-- @include _end_check.lua

return {end_checks(KEYS[1], KEYS[2], KEYS[3], ARGV, 1)}
