-- Renew the leases of the checks one replica is running (every lease/3, one call).
--
-- KEYS[1] last checks   KEYS[2] routine checks   KEYS[3] tasks (hash, _task.lua)
-- ARGV[1] lease length (s)   ARGV[2..] request id, token, id, token...
--
-- A lease is renewed only while the claim is still the caller's (same token) and still
-- running (a lease in the record: an end_check that got there first already planned the
-- next check, which must not be pushed back), and never made shorter. Returns the ids
-- whose claim was lost.

-- @include _task.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expiry = now + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local rid, token = ARGV[i], ARGV[i + 1]
  local task = task_load(KEYS[3], rid)
  if not task or tostring(task.t or 0) ~= token or (task.l or 0) == 0 then
    lost[#lost + 1] = rid
  elseif task.l < expiry then
    -- Never shortened: a claim that took its token holds from its slot on (store_claim.lua).
    task.l = expiry
    task_save(KEYS[3], rid, task)
    if redis.call('ZSCORE', KEYS[1], rid) then
      redis.call('ZADD', KEYS[1], 'XX', seconds(expiry), rid)
    else
      redis.call('ZADD', KEYS[2], 'XX', seconds(expiry), rid)
    end
  end
end
return lost
