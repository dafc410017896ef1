-- Reserve the next slot of a GCRA token bucket shared by a fleet of processes.
--
-- KEYS[1]  the bucket's hash: `tat` (theoretical arrival time) and `paused_until`,
--          both in microseconds of the Redis server's clock.
-- ARGV[1]  interval: microseconds between tokens (1e6 / rate)
-- ARGV[2]  tolerance: how far ahead of `tat` a token may be taken, (burst - 1) * interval
--
-- Returns {wait, now, paused_until, tat}: see gcra_reserve in _gcra.lua (the same
-- reservation store_claim.lua makes when a claim takes its check's token too).

-- @include _gcra.lua

local now = gcra_now()
local wait, _, paused_until, tat = gcra_reserve(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
return {wait, now, paused_until, tat}
