-- Claim the most urgent due check: last checks first, then routine ones, by due time.
--
-- KEYS[1]  last checks (zset)   KEYS[2]  routine checks (zset)   KEYS[3]  deadlines (zset)
-- KEYS[4]  tasks (hash: id -> record, _task.lua)
-- ARGV[1]  lease length in seconds
-- ARGV[2]  the claiming replica (its consumer name), recorded as 'b' for the fleet view
-- KEYS[5], ARGV[3], ARGV[4]  optional: the fleet's token bucket (_gcra.lua), its interval
--          and tolerance ('' and '' without KEYS[5]). Given, a claim also reserves its
--          check's token, in the same step: only when a check is claimed (nothing due
--          takes no token), and the lease then runs from the reserved slot, so it covers
--          the wait for it.
-- ARGV[5..] the ends of checks this replica still owes, 11 arguments each (_end_check.lua):
--          written first, so the claim sees them (and may claim one of those tasks again).
--
-- A claim leases the check: its score becomes the lease expiry (so if this replica dies,
-- the check simply comes due again for another one once the lease runs out), 'l'
-- in the record keeps that expiry, and the fencing token 't' goes up by one: only
-- writes carrying the new token count from now on (store_end_check.lua, store_resolve.lua).
-- 'b' names the claimer; it is only meaningful while 'l' is not 0.
--
-- Returns, in server seconds:
--   {1, now, tracked, request id, token, ctx, started, deadline, polls, errors,
--    last_input, status, err, trace, spec, phase, MAC, phase MAC}       a claim;
--   the same followed by {wait, now, paused_until, tat} (microseconds, gcra_reserve's
--   reply) when the claim took a token;
--   {0, now, tracked, next due or ''}                                   nothing due.

-- @include _task.lua
-- @include _gcra.lua
-- @include _end_check.lua

end_checks(KEYS[4], KEYS[1], KEYS[2], ARGV, 5)

local lease = tonumber(ARGV[1])
local now_us, t = gcra_now()
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
local tracked = redis.call('ZCARD', KEYS[3])

for _, zset in ipairs({KEYS[1], KEYS[2]}) do
  -- A few tries: an id whose record vanished (forgotten meanwhile) is dropped on the way.
  for _ = 1, 8 do
    local hit = redis.call('ZRANGEBYSCORE', zset, '-inf', stamp, 'LIMIT', 0, 1)
    local rid = hit[1]
    if not rid then
      break
    end
    local task = task_load(KEYS[4], rid)
    if not task then
      redis.call('ZREM', zset, rid)
    else
      local reserved = nil
      if KEYS[5] then
        reserved = {gcra_reserve(KEYS[5], tonumber(ARGV[3]), tonumber(ARGV[4]), now_us)}
      end
      task.t = (task.t or 0) + 1
      -- Held from the slot on: the check is made then, not now.
      task.l = now + lease + (reserved and reserved[1] / 1000000 or 0)
      task.b = ARGV[2] or ''
      -- A claim is a check about to be made: counted now, so a task whose deadline strikes
      -- mid-check is not reported as never checked (store_expire.lua reads 'p').
      task.p = (task.p or 0) + 1
      task_save(KEYS[4], rid, task)
      redis.call('ZADD', zset, seconds(task.l), rid)
      local out = {1, stamp, tracked, rid}
      for _, value in ipairs(task_reply(task)) do
        out[#out + 1] = value
      end
      for _, value in ipairs(reserved or {}) do
        out[#out + 1] = value
      end
      return out
    end
  end
end

local next_due = ''
for _, zset in ipairs({KEYS[1], KEYS[2]}) do
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if first[2] and (next_due == '' or tonumber(first[2]) < tonumber(next_due)) then
    next_due = first[2]
  end
end
return {0, stamp, tracked, next_due}
