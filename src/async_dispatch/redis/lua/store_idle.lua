-- Whether the fleet has nothing left: no task tracked, no submit in flight, and every
-- outcome acknowledged (store_ack.lua deletes acknowledged entries, so XLEN counts the
-- outcomes not yet handled by any replica).
--
-- KEYS[1] deadlines   KEYS[2] intents   KEYS[3] outcome stream
-- Returns {tracked, intents, outcomes not yet handled}.

return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[3])}
