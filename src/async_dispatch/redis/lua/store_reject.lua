-- Deliver the final outcome of a task that was never tracked (its id cannot be sent): onto
-- the outcome stream like every other outcome, so any replica may hand it over and it is
-- acknowledged the same way.
--
-- KEYS[1] outcome stream   ARGV[1] outcome (JSON)
-- ARGV[2] the outcome's MAC (redis/_integrity.py), or '' / absent without a fleet secret
-- Returns {entry id}.

if (ARGV[2] or '') ~= '' then
  return {redis.call('XADD', KEYS[1], '*', 'o', ARGV[1], 'm', ARGV[2])}
end
return {redis.call('XADD', KEYS[1], '*', 'o', ARGV[1])}
