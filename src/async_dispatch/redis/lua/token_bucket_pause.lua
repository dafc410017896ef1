-- Pause a shared GCRA token bucket: a 429 was met, hold every replica back.
--
-- KEYS[1]  the bucket's hash (see token_bucket_acquire.lua)
-- ARGV[1]  pause length in microseconds
-- ARGV[2]  tolerance: (burst - 1) * interval, in microseconds
--
-- Returns {now, paused_until}, in microseconds of the server's clock.
--
-- Pauses do not stack: the later end wins. `tat` moves to the end of the pause plus the
-- tolerance, so the bucket restarts empty and the fleet resumes at `rate`, not in a burst
-- (the same rule as the in-process TokenBucket).
--
-- Nothing is published: replicas learn of the pause from their next acquire's reply, so a
-- fleet needs no pub/sub rights (Redis 7 gives new ACL users none).

local key = KEYS[1]
local seconds = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local state = redis.call('HMGET', key, 'tat', 'paused_until')
local tat = tonumber(state[1]) or now
local paused_until = tonumber(state[2]) or 0

local proposed = now + seconds
if proposed > paused_until then
  paused_until = proposed
  tat = math.max(tat, paused_until + tolerance)
  redis.call('HSET', key, 'tat', string.format('%.17g', tat),
             'paused_until', string.format('%.17g', paused_until))
  redis.call('PEXPIRE', key, math.floor((math.max(tat, paused_until) - now) / 1000) + 1000)
end
return {math.floor(now), math.floor(paused_until)}
