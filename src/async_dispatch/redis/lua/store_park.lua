-- Hold a webhook for an id not tracked yet, while some submit is in flight fleet-wide
-- (a fast service can call back before the submitting replica has read its answer).
--
-- KEYS[1] intents   KEYS[2] parked payloads (hash: id -> payload)
-- KEYS[3] parked ids (zset: id -> expiry; store_expire.lua drops the expired ones)
-- ARGV[1] request id   ARGV[2] payload (JSON)   ARGV[3] TTL (s)   ARGV[4] most parked
--
-- Returns {1} if parked, {0} if no submit is in flight.

if redis.call('ZCARD', KEYS[1]) == 0 then
  return {0}
end
local t = redis.call('TIME')
local expiry = tonumber(t[1]) + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], expiry .. '.' .. string.format('%06d', tonumber(t[2])), ARGV[1])
-- Bounded: the oldest go first (they would expire first anyway).
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then
  for _, rid in ipairs(redis.call('ZRANGE', KEYS[3], 0, excess - 1)) do
    redis.call('HDEL', KEYS[2], rid)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, excess - 1)
end
return {1}
