-- Bind a fleet name to one API key, by a fingerprint of that key (never the key); the
-- same for its fleet secret (RedisConnection.bind_secret), by that secret's fingerprint.
--
-- KEYS[1]  the fleet's `key` (or `integrity`) string
-- ARGV[1]  the fingerprint of the caller's API key (or fleet secret, or 'unsigned')
--
-- Returns {1, fingerprint} when the fleet is (now) bound to this fingerprint, {0, other}
-- when another API key (or secret) holds the name. The first caller binds it; the binding has no
-- TTL, so no eviction policy that spares keys without a TTL loses it.

local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1])
  return {1, ARGV[1]}
end
if current == ARGV[1] then
  return {1, current}
end
return {0, current}
