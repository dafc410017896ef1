-- The application's outcome handler failed on an outcome this replica holds: give it back
-- to the fleet for another delivery, or, once it has been delivered the most times, move
-- it to the dead-letter stream (the same place as an outcome no replica can read), so a
-- handler that always fails on one outcome neither loses it nor retries it for ever.
--
-- Given back, the entry stays pending under this consumer with its idle time set so that
-- it becomes claimable (store_takeover.lua's XAUTOCLAIM, by any replica, this one
-- included) after the retry delay: the next delivery counts one more, and it may go to a
-- replica whose handler works. XCLAIM ... JUSTID counts no delivery itself.
--
-- KEYS[1] outcome stream   KEYS[2] dead-letter stream
-- ARGV[1] group   ARGV[2] this consumer   ARGV[3] entry id   ARGV[4] most deliveries
-- ARGV[5] reason (for the dead letter)   ARGV[6] idle time to set (ms)
-- ARGV[7] most dead letters kept
--
-- Returns {0} the entry is not this replica's (taken over meanwhile, or acknowledged),
--         {1, deliveries} given back, {2, deliveries} dead-lettered.

local info = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not info[1] or info[1][2] ~= ARGV[2] then
  return {0}
end
local deliveries = tonumber(info[1][4])
if deliveries >= tonumber(ARGV[4]) then
  local payload = ''
  local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
  if entry[1] then
    local fields = entry[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'o' then
        payload = fields[i + 1]
      end
    end
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'o', payload, 'entry', ARGV[3],
             'reason', ARGV[5])
  return {2, deliveries}
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[6], 'JUSTID')
return {1, deliveries}
