-- Take over outcomes that a dead (or stuck) replica read but never acknowledged: entries
-- pending longer than the idle limit move to the caller in one step (XAUTOCLAIM), so two
-- live readers can never both take the same entry.
--
-- KEYS[1] outcome stream   ARGV[1] group   ARGV[2] consumer   ARGV[3] min idle (ms)
-- ARGV[4] most entries
--
-- Returns {id, payload, times delivered (this one included), id, payload, count, ...}.

local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                           'COUNT', ARGV[4])
local out = {}
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  local payload = ''
  for i = 1, #fields, 2 do
    if fields[i] == 'o' then
      payload = fields[i + 1]
    end
  end
  local info = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local count = (info[1] and info[1][4]) or 2
  out[#out + 1] = id
  out[#out + 1] = payload
  out[#out + 1] = count
end
return out
