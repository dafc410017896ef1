-- Track many tasks in one call (RedisStore.add_many, behind Poller.track_many): the same
-- rules as store_add.lua without a submit intent, for a chunk of tasks at once, so that
-- tracking 100,000 ids costs a few hundred round trips, not 100,000.
--
-- KEYS[1]  tasks (hash, _task.lua)   KEYS[2]  last checks   KEYS[3]  routine checks
-- KEYS[4]  deadlines (zset, _task.lua)   KEYS[5]  finished ids (zset: id -> expiry)
-- ARGV[1]  the trace context every task of this call gets (store_add.lua's ARGV[8]), or ''
-- ARGV[2]  the tasks, one JSON array: per task [request id, context (JSON text), started,
--          deadline, first check (null: none), last-check time, spec (JSON text or ''),
--          and, with a fleet secret, the record's MAC (redis/_integrity.py)],
--          times in server seconds (see store_add.lua)
--
-- The chunk travels as one argument and is written with one command per key (HMGET and
-- ZMSCORE to find what is known, then one HSET and one ZADD per zset), not several per
-- task: the per-argument and per-command work, on both sides, was most of the cost.
--
-- Returns {a string with one character per task, in order: '1' added, '0' not (tracked
-- already, finished recently, or a repeat within this call)}.

-- @include _task.lua

local trace = ARGV[1] ~= '' and ARGV[1] or nil
local rows = cjson.decode(ARGV[2])
local n = #rows
if n == 0 then
  return {''}
end
local rids = {}
for i = 1, n do
  rids[i] = rows[i][1]
end
local tracked = redis.call('HMGET', KEYS[1], unpack(rids))
local finished = redis.call('ZMSCORE', KEYS[5], unpack(rids))

-- Scores go out as text with every digit (a Lua number would be cut to 14).
local function score(value)
  return string.format('%.17g', value)
end

local seen, flags = {}, {}
local records, last, routine, deadlines = {}, {}, {}, {}
for i = 1, n do
  local row = rows[i]
  local rid = row[1]
  -- Tracked already, or finished recently (its one final outcome exists): nothing to add.
  if tracked[i] or finished[i] or seen[rid] then
    flags[i] = '0'
  else
    seen[rid] = true
    flags[i] = '1'
    local due, last_due = row[5], row[6]
    records[#records + 1] = rid
    records[#records + 1] = cmsgpack.pack({c = row[2], s = row[3], d = row[4], ld = last_due,
                                           tr = trace, sp = text_or_nil(row[7]),
                                           m = text_or_nil(row[8])})
    local is_last = true
    if due ~= cjson.null then
      is_last = due >= last_due
      local into = is_last and last or routine
      into[#into + 1] = score(due)
      into[#into + 1] = rid
    end
    -- Scored by its last-check time while its check is routine (_task.lua).
    deadlines[#deadlines + 1] = score(is_last and row[4] or last_due)
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
