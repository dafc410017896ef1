-- The application took outcomes: acknowledge them and delete them from the stream (one
-- consumer group per store name, so an acknowledged entry is needed by nobody; this keeps
-- the stream as short as the outcomes in flight, and XLEN = 0 means all were handled).
--
-- KEYS[1] outcome stream   ARGV[1] consumer group   ARGV[2..] entry ids (one or many:
-- RedisStore acknowledges in batches)
-- Returns {how many were acknowledged}.

local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return {n}
