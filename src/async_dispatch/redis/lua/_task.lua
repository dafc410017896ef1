-- Prepended to every script that reads or writes a task (the line `-- @include _task.lua`
-- is replaced by this file when RedisConnection loads a script).
--
-- All of a fleet's tasks live in ONE hash, `tasks` (field: request id, value: the task's
-- record, MessagePack), not a key per task: then every key a script touches is a fixed
-- key of the fleet that the caller declares in KEYS, which is what lets Redis Cluster
-- route a script, and keep it right while the fleet's slot migrates (a script touching an
-- undeclared key that has already moved fails half-way). It also costs less memory per
-- task than a hash of its own (no key, no per-key overhead, short field names).
--
-- A record is a map with short names (absent = the default):
--   c ctx (JSON text)   s started   d deadline   ld last-check time   (server seconds)
--   p polls   e errors   t fencing token   l lease expiry while claimed, else 0
--   i last input request reported   st last status payload (JSON)   er last error (JSON)
--   ix the SHA-1 digests of the last 32 input requests reported (hex, space-separated)
--   b the consumer name of the replica that last claimed it (meaningful while l > 0)
--   tr the task's trace context (W3C Trace Context headers as one JSON object), if any
--   sp spec (`TaskSpec` JSON: what a resubmission or a typed output needs, never a
--      secret; it lists the earlier attempts' ids)
--   ph phase: 'wait' (the attempt failed: resubmitted at its next check) or 'sending'
--      (a resubmission under way, store_begin_resubmit.lua); absent = '' (none)
--   m  the fleet secret's MAC over id, c, tr and sp; sm, em, pm the MACs of st, er and
--      of a 'wait' phase
--      (only with a fleet secret: redis/_integrity.py; Lua copies them, never makes them)

-- The `deadlines` zset holds every tracked task (its ZCARD is the tracked count). Its score
-- is the next time store_expire.lua must look at the task: the task's last-check time
-- ('ld') while its planned check is a routine one and that time is still ahead (then the
-- round promotes the waiting check to a last check and re-scores the entry by 'd'), else
-- its deadline 'd'. A score below the record's 'd' therefore marks a pending promotion:
-- one entry per task serves both, where a second zset of last-check times cost ~136 B per
-- task.

local function task_load(tasks, rid)
  local raw = redis.call('HGET', tasks, rid)
  if not raw then
    return nil
  end
  return cmsgpack.unpack(raw)
end

local function task_save(tasks, rid, task)
  redis.call('HSET', tasks, rid, cmsgpack.pack(task))
end

-- A text argument as stored (a spec, a trace context): '' or absent is none, so nothing
-- is kept for it.
local function text_or_nil(value)
  if value == nil or value == '' then
    return nil
  end
  return value
end

-- Times leave a script as text: Redis turns a Lua number into an integer reply.
local function seconds(value)
  return string.format('%.6f', value)
end

-- The fields a replica reads, in the order RedisStore._task() takes them.
local function task_reply(task)
  return {task.t or 0, task.c or '', seconds(task.s), seconds(task.d), task.p or 0,
          task.e or 0, task.i or '', task.st or '', task.er or '', task.tr or '',
          task.sp or '', task.ph or '', task.m or '', task.pm or ''}
end

-- Track a new task: its record (only what is not a default, see above) and its first
-- check, a last one if it falls due at or after the last-check time. From its last-check
-- time on, a routine check still waiting is served as the last one (store_expire.lua
-- promotes it when the deadlines entry, scored by that time, comes up): a short budget
-- must not starve a task's last check. `first_due` is server seconds or 'inf' (none).
-- Used by store_add.lua and store_resubmitted.lua, whose KEYS[1..4] are these four.
local function task_start(keys, rid, ctx, started, deadline, first_due, last_check, trace, spec,
                          mac)
  task_save(keys[1], rid, {c = ctx, s = tonumber(started), d = tonumber(deadline),
                           ld = tonumber(last_check), tr = text_or_nil(trace),
                           sp = text_or_nil(spec), m = text_or_nil(mac)})
  local last = true
  if first_due ~= 'inf' then
    last = tonumber(first_due) >= tonumber(last_check)
    redis.call('ZADD', last and keys[2] or keys[3], first_due, rid)
  end
  redis.call('ZADD', keys[4], last and deadline or last_check, rid)
end
