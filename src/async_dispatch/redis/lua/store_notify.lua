-- Deliver a non-final outcome (an INPUT_REQUIRED notification) once per input request,
-- fleet-wide: the identity of the last input request reported is kept in the task's hash,
-- so a poll on one replica and a webhook on another do not both report it; and every one
-- reported (the SHA-1 of the last 32, 'inputs'), so a stale replica whose reading is older
-- (it stalled mid-check) cannot report an earlier request again after a newer one, nor
-- make the newer one look new once more.
--
-- KEYS[1]  the task's hash   KEYS[2]  outcome stream
-- ARGV[1]  identity of the input request   ARGV[2]  outcome (JSON)
--
-- Returns {1} if delivered, 0 if the task is gone or this request was already reported.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0}
end
if redis.call('HGET', KEYS[1], 'last_input') == ARGV[1] then
  return {0}
end
local digest = redis.sha1hex(ARGV[1])
local inputs = redis.call('HGET', KEYS[1], 'inputs') or ''
if string.find(inputs, digest, 1, true) then
  return {0}
end
inputs = inputs .. digest .. ' '
if #inputs > 41 * 32 then
  inputs = string.sub(inputs, #inputs - 41 * 32 + 1)
end
redis.call('HSET', KEYS[1], 'last_input', ARGV[1], 'inputs', inputs)
redis.call('XADD', KEYS[2], '*', 'o', ARGV[2])
return {1}
