-- Renew the leases of the checks one replica is running (every lease/3, one call).
--
-- KEYS[1] last checks   KEYS[2] routine checks
-- ARGV[1] key prefix   ARGV[2] lease length (s)   ARGV[3..] request id, token, id, token...
--
-- A lease is renewed only while the claim is still the caller's (same token) and still
-- running ('lease' not 0: an end_check that got there first already planned the next
-- check, which must not be pushed back). Returns the ids whose claim was lost.

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expiry = string.format('%.6f', now + tonumber(ARGV[2]))
local lost = {}
for i = 3, #ARGV, 2 do
  local rid, token = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. 'task:' .. rid
  local f = redis.call('HMGET', key, 'token', 'lease')
  if f[1] ~= token or f[2] == '0' or not f[2] then
    lost[#lost + 1] = rid
  else
    redis.call('HSET', key, 'lease', expiry)
    if redis.call('ZSCORE', KEYS[1], rid) then
      redis.call('ZADD', KEYS[1], 'XX', expiry, rid)
    else
      redis.call('ZADD', KEYS[2], 'XX', expiry, rid)
    end
  end
end
return lost
