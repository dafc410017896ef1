-- Claim the most urgent due check: last checks first, then routine ones, by due time.
--
-- KEYS[1]  last checks (zset)   KEYS[2]  routine checks (zset)   KEYS[3]  deadlines (zset)
-- ARGV[1]  key prefix ('async_dispatch:{name}:')   ARGV[2]  lease length in seconds
-- ARGV[3]  the claiming replica (its consumer name), recorded as 'by' for the fleet view
--
-- A claim leases the check: its score becomes the lease expiry (so if this replica dies,
-- the check simply comes due again for another one once the lease runs out), 'lease'
-- in the hash records that expiry, and the fencing token 'token' goes up by one: only
-- writes carrying the new token count from now on (store_end_check.lua, store_resolve.lua).
-- 'by' names the claimer; it is only meaningful while 'lease' is not 0.
--
-- Returns, in server seconds:
--   {1, now, tracked, request id, token, ctx, started, deadline, polls, errors,
--    last_input, status, err, spec, phase}                              a claim;
--   {0, now, tracked, next due or ''}                                   nothing due.

local prefix, lease = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
local tracked = redis.call('ZCARD', KEYS[3])

for _, zset in ipairs({KEYS[1], KEYS[2]}) do
  -- A few tries: an id whose hash vanished (forgotten meanwhile) is dropped on the way.
  for _ = 1, 8 do
    local hit = redis.call('ZRANGEBYSCORE', zset, '-inf', stamp, 'LIMIT', 0, 1)
    local rid = hit[1]
    if not rid then
      break
    end
    local key = prefix .. 'task:' .. rid
    if redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', zset, rid)
    else
      local token = redis.call('HINCRBY', key, 'token', 1)
      local expiry = string.format('%.6f', now + lease)
      redis.call('HSET', key, 'lease', expiry, 'by', ARGV[3] or '')
      -- A claim is a check about to be made: counted now, so a task whose deadline strikes
      -- mid-check is not reported as never checked (store_expire.lua reads 'polls').
      redis.call('HINCRBY', key, 'polls', 1)
      redis.call('ZADD', zset, expiry, rid)
      local f = redis.call('HMGET', key, 'ctx', 'started', 'deadline', 'polls', 'errors',
                          'last_input', 'status', 'err', 'spec', 'phase')
      return {1, stamp, tracked, rid, token, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8],
              f[9] or '', f[10] or ''}
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
