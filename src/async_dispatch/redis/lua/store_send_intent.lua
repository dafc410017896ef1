-- A submit is about to go on the wire (its turn and token taken; again at each retry):
-- from now on its intent is "sent", and if its replica stops renewing it (dies, stalls, or
-- loses Redis) before store_add.lua drops it, store_expire.lua reports SUBMIT_UNCERTAIN
-- with what is kept here. An intent that was never sent expires without an outcome:
-- nothing reached the service, and the submit died with its caller.
--
-- KEYS[1] intents (zset: id -> expiry)   KEYS[2] intent start times (hash)
-- KEYS[3] sent intents (hash: id -> the outcome's "error" and "context" members, JSON)
-- ARGV[1] intent id   ARGV[2] those members   ARGV[3] timeout (s): a submit plus a lease
--
-- Returns {now} (server seconds).

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
-- Again if it expired meanwhile (a replica stalled while waiting: nothing was reported).
redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[3])), ARGV[1])
redis.call('HSETNX', KEYS[2], ARGV[1], string.format('%.6f', now))
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return {string.format('%.6f', now)}
