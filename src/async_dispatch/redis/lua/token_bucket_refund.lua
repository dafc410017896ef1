-- Hand back a slot that token_bucket_acquire.lua reserved but the caller will not use
-- (it was cancelled while it slept).
--
-- KEYS[1]  the bucket's hash
-- ARGV[1]  the `tat` that the reservation left behind (as the acquire script answered it)
-- ARGV[2]  interval, in microseconds
--
-- Only the last reservation can be handed back: if anyone reserved after it, `tat` has
-- moved on and the slot stays spent (a gap in the schedule, never an excess). Returns 1
-- when the slot was handed back, 0 otherwise.

local key = KEYS[1]
local tat = redis.call('HGET', key, 'tat')
if tat == ARGV[1] then
  redis.call('HSET', key, 'tat', string.format('%.17g', tonumber(tat) - tonumber(ARGV[2])))
  return 1
end
return 0
