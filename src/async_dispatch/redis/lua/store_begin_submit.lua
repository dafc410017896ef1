-- Record a submit intent BEFORE the submit request is sent: if this replica dies before
-- store_add.lua tracks the task (and drops the intent), store_expire.lua reports the intent
-- as SUBMIT_UNCERTAIN once it is older than its timeout.
--
-- KEYS[1] intents (zset: id -> expiry)   KEYS[2] intent start times (hash)
-- ARGV[1] intent id   ARGV[2] timeout (s): the submit's timeout plus a lease
--
-- Returns {now} (server seconds).

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%.6f', now))
return {string.format('%.6f', now)}
