-- Reserve the next slot of a GCRA token bucket shared by a fleet of processes.
--
-- KEYS[1]  the bucket's hash: `tat` (theoretical arrival time) and `paused_until`,
--          both in microseconds of the Redis server's clock.
-- ARGV[1]  interval: microseconds between tokens (1e6 / rate)
-- ARGV[2]  tolerance: how far ahead of `tat` a token may be taken, (burst - 1) * interval
--
-- Returns {wait, now, paused_until, tat}: how many microseconds the caller must sleep before
-- it sends, the server's clock, the pause in force (0 when none) and the new `tat` (the
-- caller needs it to hand its slot back if it is cancelled: token_bucket_refund.lua).
--
-- The answer and the reservation are one atomic step: the caller does not ask "may I?"
-- and come back later, it is given a slot and the bucket moves past it. So a throttled
-- token still costs one round trip, and callers are served in the order their calls reach
-- Redis, whichever process they come from.
--
-- The only clock is Redis's own (TIME): replicas' clocks may disagree by more than a token
-- interval. Since Redis 5 scripts replicate by effects, so reading TIME here is safe.

local key = KEYS[1]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local state = redis.call('HMGET', key, 'tat', 'paused_until')
local tat = tonumber(state[1]) or now
local paused_until = tonumber(state[2]) or 0

-- The earliest time this request conforms: now, or once the bucket has room again, or
-- once the pause is over (pause.lua also pushed `tat`, so the bucket restarts empty).
local slot = math.max(now, tat - tolerance, paused_until)
tat = math.max(tat, slot) + interval

-- '%.17g' keeps every digit: Lua's default number-to-string conversion (%.14g) would
-- round microseconds since 1970 to tens of microseconds.
redis.call('HSET', key, 'tat', string.format('%.17g', tat))

-- Once `tat` and the pause lie in the past, a missing hash means the same as this one,
-- so let it expire then (plus a second of slack) and leave nothing behind for ever.
local horizon = math.max(tat, paused_until) - now
redis.call('PEXPIRE', key, math.floor(horizon / 1000) + 1000)

if paused_until <= now then
  paused_until = 0
end
return {math.floor(slot - now), math.floor(now), math.floor(paused_until), string.format('%.17g', tat)}
