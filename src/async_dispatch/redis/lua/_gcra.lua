-- Prepended to every script that takes a token from a fleet's GCRA bucket (the line
-- `-- @include _gcra.lua` is replaced by this file when RedisConnection loads a script):
-- token_bucket_acquire.lua, and store_claim.lua when a claim takes its check's token too.
--
-- The bucket is a hash: `tat` (theoretical arrival time) and `paused_until`, both in
-- microseconds of the Redis server's clock. The only clock is Redis's own (TIME):
-- replicas' clocks may disagree by more than a token interval. Since Redis 5 scripts
-- replicate by effects, so reading TIME in a script is safe.

-- The server's clock in microseconds, and TIME's raw reply (for a caller that also needs
-- seconds).
local function gcra_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]), t
end

-- Reserve the next slot of the bucket at `key` and move the bucket past it.
-- `interval`: microseconds between tokens (1e6 / rate); `tolerance`: how far ahead of
-- `tat` a token may be taken, (burst - 1) * interval; `now`: gcra_now()'s microseconds.
--
-- Returns wait, now, paused_until, tat: how many microseconds the caller must sleep
-- before it sends, the server's clock, the pause in force (0 when none) and the new `tat`
-- as text (the caller hands its slot back with it if it does not use it:
-- token_bucket_refund.lua).
--
-- The answer and the reservation are one atomic step: the caller does not ask "may I?"
-- and come back later, it is given a slot and the bucket moves past it. So a throttled
-- token still costs one round trip, and callers are served in the order their calls reach
-- Redis, whichever process they come from.
local function gcra_reserve(key, interval, tolerance, now)
  local state = redis.call('HMGET', key, 'tat', 'paused_until')
  local tat = tonumber(state[1]) or now
  local paused_until = tonumber(state[2]) or 0

  -- The earliest time this request conforms: now, or once the bucket has room again, or
  -- once the pause is over (token_bucket_pause.lua also pushed `tat`, so the bucket
  -- restarts empty).
  local slot = math.max(now, tat - tolerance, paused_until)
  tat = math.max(tat, slot) + interval

  -- '%.17g' keeps every digit: Lua's default number-to-string conversion (%.14g) would
  -- round microseconds since 1970 to tens of microseconds.
  local tat_text = string.format('%.17g', tat)
  redis.call('HSET', key, 'tat', tat_text)

  -- Once `tat` and the pause lie in the past, a missing hash means the same as this one,
  -- so let it expire then (plus a second of slack) and leave nothing behind for ever.
  local horizon = math.max(tat, paused_until) - now
  redis.call('PEXPIRE', key, math.floor(horizon / 1000) + 1000)

  if paused_until <= now then
    paused_until = 0
  end
  return math.floor(slot - now), math.floor(now), math.floor(paused_until), tat_text
end
