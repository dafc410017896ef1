-- The fleet's epoch: a random marker written by the first replica that attaches.
--
-- KEYS[1]  the fleet's `epoch` string
-- ARGV[1]  a fresh random value, used if the fleet has no epoch yet
--
-- Returns {epoch}. Each replica remembers the epoch it attached under; store_idle.lua
-- compares. A Redis restarted without persistence, a FLUSHDB or an eviction removes the
-- marker with the rest of the fleet's state, and the next replica to attach writes a new
-- one, so a replica whose epoch is gone knows that what it tracked is gone too.

redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {redis.call('GET', KEYS[1])}
