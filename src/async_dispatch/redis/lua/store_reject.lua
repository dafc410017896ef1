-- Deliver the final outcome of a task that was never tracked (its id cannot be sent): onto
-- the outcome stream like every other outcome, so any replica may hand it over and it is
-- acknowledged the same way.
--
-- KEYS[1] outcome stream   ARGV[1] outcome (JSON)
-- Returns {entry id}.

return {redis.call('XADD', KEYS[1], '*', 'o', ARGV[1])}
