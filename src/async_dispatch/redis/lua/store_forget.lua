-- Stop tracking a task without an outcome.
--
-- KEYS[1]  tasks (hash)   KEYS[2]  last checks   KEYS[3]  routine checks   KEYS[4] deadlines
-- ARGV[1]  request id
--
-- Returns {1} if the task was tracked.

local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return {existed}
