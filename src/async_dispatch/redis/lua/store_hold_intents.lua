-- Keep the submit intents of this replica's submits in flight alive: a live replica
-- finishes its own submits (tracks the task, or drops the intent), so its intents must
-- not expire however long a submit waits for its turn behind a small budget. Each expiry
-- moves to at least now + the given seconds, never earlier. An intent already gone (it
-- expired while this replica was stalled) is not made again.
--
-- KEYS[1] intents (zset: id -> expiry)   ARGV[1] seconds   ARGV[2..] intent ids
-- Returns {intents kept}.

local t = redis.call('TIME')
local until_ = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000
                                     + tonumber(ARGV[1]))
local kept = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'GT', until_, ARGV[i])
    kept = kept + 1
  end
end
return {kept}
