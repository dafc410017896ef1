-- The Redis server's clock, as TIME answers it: {seconds, microseconds}, both strings.
--
-- Read through a script rather than coredis's `time()`: coredis 6.9's TimeCallback adds
-- `timedelta(microseconds=usec / 1000)`, so the sub-second part is lost (see
-- RedisConnection.server_time).
return redis.call('TIME')
