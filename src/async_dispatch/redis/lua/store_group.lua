-- Create the outcome stream and its consumer group if missing (at attach, and after a
-- Redis restart that forgot them). From id 0: acknowledged entries are deleted, so
-- everything still in the stream is an outcome nobody handled yet.
--
-- KEYS[1] outcome stream   ARGV[1] consumer group
-- Returns {1} if created, {0} if it existed.

local reply = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(reply) == 'table' and reply.err then
  if string.find(reply.err, 'BUSYGROUP') then
    return {0}
  end
  return redis.error_reply(reply.err)
end
return {1}
