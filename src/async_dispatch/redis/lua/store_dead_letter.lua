-- Move an outcome no replica can read (an entry written by a newer version, or garbled)
-- out of the outcome stream, into the fleet's dead-letter stream with the reason: it was
-- delivered several times (to several replicas, newer ones included, after takeovers)
-- and nobody could decode it. Left where it was, it would bounce between replicas for
-- ever and no finite `async for` could end (the stream would never be empty).
--
-- KEYS[1] outcome stream   KEYS[2] dead-letter stream
-- ARGV[1] consumer group   ARGV[2] entry id   ARGV[3] payload   ARGV[4] reason
-- ARGV[5] most dead letters kept (the oldest go first)
-- Returns {moved (0/1)}: 0 when the entry is no longer pending (another replica moved it).

if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0}
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'o', ARGV[3], 'entry', ARGV[2],
           'reason', ARGV[4])
return {1}
