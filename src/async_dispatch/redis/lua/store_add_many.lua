-- Track many tasks in one call (RedisStore.add_many, behind Poller.track_many): the same
-- rules as store_add.lua without a submit intent, for a chunk of tasks at once, so that
-- tracking 100,000 ids costs a hundred round trips, not 100,000.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  last checks   KEYS[3]  routine checks
-- KEYS[4]  deadlines (zset, _task.lua)   KEYS[5]  finished ids (zset: id -> expiry)
-- ARGV[1]  the tasks, one MessagePack array of five items per task: request id, record
--          (MessagePack, as task_start would write it, with the fleet secret's MAC 'm'
--          when there is one: _task.lua, redis/_integrity.py), which check set
--          (0 none, 1 last checks, 2 routine checks), the check's score (server seconds;
--          ignored with 0), the task's score in deadlines (_task.lua's rule)
--
-- The client builds the records and decides each task's sets (redis/_msgpack.py): packing
-- a record per task here, and decoding a JSON chunk, was most of Redis's time. The chunk
-- is written with one command per key (HMGET and ZMSCORE to find what is known, then one
-- HSET and one ZADD per zset), not several per task.
--
-- Returns {a string with one character per task, in order: '1' added, '0' not (tracked
-- already, finished recently, or a repeat within this call)}.

local items = cmsgpack.unpack(ARGV[1])
local n = #items / 5
if n == 0 then
  return {''}
end
local rids = {}
for i = 1, n do
  rids[i] = items[i * 5 - 4]
end
local tracked = redis.call('HMGET', KEYS[1], unpack(rids))
local finished = redis.call('ZMSCORE', KEYS[5], unpack(rids))

-- Scores stay Lua numbers: redis.call writes a number out with every digit (%.17g).
local seen, flags = {}, {}
local records, last, routine, deadlines = {}, {}, {}, {}
for i = 1, n do
  local rid = rids[i]
  -- Tracked already, or finished recently (its one final outcome exists): nothing to add.
  if tracked[i] or finished[i] or seen[rid] then
    flags[i] = '0'
  else
    seen[rid] = true
    flags[i] = '1'
    local at = i * 5 - 4
    records[#records + 1] = rid
    records[#records + 1] = items[at + 1]
    local kind = items[at + 2]
    if kind ~= 0 then
      local into = kind == 1 and last or routine
      into[#into + 1] = items[at + 3]
      into[#into + 1] = rid
    end
    deadlines[#deadlines + 1] = items[at + 4]
    deadlines[#deadlines + 1] = rid
  end
end
if #records > 0 then
  redis.call('HSET', KEYS[1], unpack(records))
  redis.call('ZADD', KEYS[4], unpack(deadlines))
end
if #last > 0 then
  redis.call('ZADD', KEYS[2], unpack(last))
end
if #routine > 0 then
  redis.call('ZADD', KEYS[3], unpack(routine))
end
return {table.concat(flags)}
