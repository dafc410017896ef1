-- Deliver a non-final outcome (an INPUT_REQUIRED notification) once per input request,
-- fleet-wide: the identity of the last input request reported is kept in the task's hash,
-- so a poll on one replica and a webhook on another do not both report it.
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
redis.call('HSET', KEYS[1], 'last_input', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'o', ARGV[2])
return {1}
