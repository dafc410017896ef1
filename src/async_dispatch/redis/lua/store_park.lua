-- Hold a webhook for an id not tracked yet, while some submit is in flight fleet-wide
-- (a fast service can call back before the submitting replica has read its answer).
--
-- KEYS[1] intents   KEYS[2] the parked payload of this id   KEYS[3] parked ids (zset)
-- ARGV[1] request id   ARGV[2] payload (JSON)   ARGV[3] TTL (s)   ARGV[4] most parked
-- ARGV[5] key prefix
--
-- Returns {1} if parked, {0} if no submit is in flight.

if redis.call('ZCARD', KEYS[1]) == 0 then
  return {0}
end
local t = redis.call('TIME')
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], t[1] .. '.' .. string.format('%06d', tonumber(t[2])), ARGV[1])
-- Bounded: the oldest go first (their keys would expire anyway).
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then
  for _, rid in ipairs(redis.call('ZRANGE', KEYS[3], 0, excess - 1)) do
    redis.call('DEL', ARGV[5] .. 'parked:' .. rid)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, excess - 1)
end
return {1}
