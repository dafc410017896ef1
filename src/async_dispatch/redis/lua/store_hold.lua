-- Keep the outcomes this replica handed to its application, and that are not acknowledged
-- yet, its own: reset their idle time (XCLAIM ... JUSTID, which counts no delivery), so
-- that no takeover, this replica's own included, mistakes them for a dead replica's. An
-- application may take its time over a queue of outcomes; a live replica's are never
-- delivered twice. Entries another replica took over meanwhile (this one stalled past
-- the idle limit) stay with it.
--
-- KEYS[1] outcome stream   ARGV[1] group   ARGV[2] this consumer   ARGV[3..] entry ids
-- Returns the ids kept: an id left out is no longer this replica's (RedisStore.holds then
-- keeps its poller from handing it over: the replica that took it over does).

local mine = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], '0'}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    mine[#mine + 1] = ARGV[i]
  end
end
local kept = {}
for i = 6, #mine do
  kept[#kept + 1] = mine[i]
end
if #kept > 0 then
  mine[#mine + 1] = 'JUSTID'
  redis.call(unpack(mine))
end
return kept
