-- Track many tasks in one call (RedisStore.add_many, behind Poller.track_many): the same
-- rules as store_add.lua without a submit intent, for a chunk of tasks at once, so that
-- tracking 100,000 ids costs a few hundred round trips, not 100,000.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  last checks   KEYS[3]  routine checks
-- KEYS[4]  deadlines (zset, _task.lua)   KEYS[5]  finished ids (zset: id -> expiry)
-- ARGV[1]  the trace context every task of this call gets (store_add.lua's ARGV[8]), or ''
-- ARGV     then seven per task: request id, context (JSON), started, deadline, first
--          check (or 'inf'), last-check time (server seconds), spec (JSON or ''; see
--          store_add.lua)
--
-- Returns {added (0/1) for each task, in order}.

-- @include _task.lua

local added = {}
local trace = ARGV[1] ~= '' and ARGV[1] or nil
for i = 2, #ARGV, 7 do
  local rid, due, last_due = ARGV[i], ARGV[i + 4], ARGV[i + 5]
  -- Tracked already, or finished recently (its one final outcome exists): nothing to add.
  if redis.call('HEXISTS', KEYS[1], rid) == 1 or redis.call('ZSCORE', KEYS[5], rid) then
    added[#added + 1] = 0
  else
    task_save(KEYS[1], rid, {c = ARGV[i + 1], s = tonumber(ARGV[i + 2]),
                             d = tonumber(ARGV[i + 3]), ld = tonumber(last_due), tr = trace,
                             sp = text_or_nil(ARGV[i + 6])})
    local last = true
    if due ~= 'inf' then
      last = tonumber(due) >= tonumber(last_due)
      redis.call('ZADD', last and KEYS[2] or KEYS[3], due, rid)
    end
    redis.call('ZADD', KEYS[4], last and ARGV[i + 3] or last_due, rid)
    added[#added + 1] = 1
  end
end
return added
