-- Take over outcomes that a dead (or stuck) replica read but never acknowledged: entries
-- pending longer than the idle limit move to the caller in one step (XAUTOCLAIM), so two
-- live readers can never both take the same entry.
--
-- Then forget the consumers that hold nothing and have not read for as long: replicas that
-- are gone. Every replica that ever read an outcome is a consumer of the group until
-- deleted, so without this each restart (each deploy) would leave one behind for good.
-- Only consumers with nothing pending go: deleting one drops its pending entries. A live
-- replica reads every half second at most; one deleted anyway (stalled past the limit)
-- is made again by its next read, with nothing lost.
--
-- KEYS[1] outcome stream   ARGV[1] group   ARGV[2] consumer   ARGV[3] min idle (ms)
-- ARGV[4] most entries
--
-- Returns {consumers forgotten, id, payload, MAC, proof, times delivered (this one
-- included), id, payload, ...}: the MAC and proof (fields 'm' and 'p', '' when absent)
-- are what redis/_integrity.py checks.

local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                           'COUNT', ARGV[4])
local min_idle = tonumber(ARGV[3])
local forgotten = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if info['pending'] == 0 and info['idle'] > min_idle and info['name'] ~= ARGV[2] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    forgotten = forgotten + 1
  end
end

local out = {forgotten}
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  local got = {o = '', m = '', p = ''}
  for i = 1, #fields, 2 do
    if got[fields[i]] then
      got[fields[i]] = fields[i + 1]
    end
  end
  local info = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local count = (info[1] and info[1][4]) or 2
  out[#out + 1] = id
  out[#out + 1] = got.o
  out[#out + 1] = got.m
  out[#out + 1] = got.p
  out[#out + 1] = count
end
return out
