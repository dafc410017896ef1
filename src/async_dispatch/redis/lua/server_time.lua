-- The Redis server's clock, as TIME answers it: {seconds, microseconds}, both strings.
--
-- Read through a script rather than coredis's `time()`: coredis 6.9's TimeCallback adds
-- `timedelta(microseconds=usec / 1000)`, so the sub-second part is lost (see
-- RedisConnection.server_time).
--
-- KEYS[1], optional and not read: a key of the fleet, so that Redis Cluster runs this on
-- the node that owns the fleet's slot (whose clock the fleet's scripts use).
return redis.call('TIME')
