-- Whether the fleet has nothing left: no task tracked, no submit in flight, and every
-- outcome acknowledged (store_ack.lua deletes acknowledged entries, so XLEN counts the
-- outcomes not yet handled by any replica).
--
-- KEYS[1] deadlines   KEYS[2] intents   KEYS[3] outcome stream   KEYS[4] epoch
-- ARGV[1] the epoch the caller attached under (store_epoch.lua)
-- Returns {tracked, intents, outcomes not yet handled, 1 if the epoch is still ARGV[1]}.
-- An empty fleet under another epoch (or none) is not idle: its state was lost.

local epoch_ok = redis.call('GET', KEYS[4]) == ARGV[1] and 1 or 0
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[3]),
        epoch_ok}
