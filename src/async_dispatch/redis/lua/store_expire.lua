-- The store's periodic round (run by every replica's reaper, a few times a second):
--   1. walk the deadlines zset up to now (its score: _task.lua): promote to a last check
--      every routine check still waiting at its task's last-check time (so that the last
--      checks of a short budget are served first), and resolve every task whose deadline
--      has passed as TIMED_OUT (server clock), with the outcome built here from the record;
--   2. turn every submit intent past its expiry (its replica stopped renewing it) into a
--      SUBMIT_UNCERTAIN outcome if the submit was sent, or drop it if it never was;
--   3. forget the finished ids whose time is up (store_resolve.lua says why a zset), and
--      the parked webhooks whose time is up (store_park.lua);
--   4. report what the replicas use as hints: tracked count, next deadline, next check.
--
-- KEYS[1] deadlines   KEYS[2] last checks   KEYS[3] routine checks   KEYS[4] outcome stream
-- KEYS[5] intents (zset: id -> expiry)   KEYS[6] intent start times (hash)
-- KEYS[7] finished ids (zset: id -> expiry)
-- KEYS[8] tasks (hash, _task.lua)   KEYS[9] parked payloads (hash)
-- KEYS[10] parked ids (zset: id -> expiry)
-- KEYS[11] sent intents (hash: id -> the SUBMIT_UNCERTAIN outcome's error and context)
-- KEYS[12] rounds (hash: last, when the last round ran; hold, endings held until then)
-- ARGV[1] most endings per call   ARGV[2] seconds to remember a finished id
-- ARGV[3] seconds to hold endings after a gap   ARGV[4] the gap (s)
--
-- Returns {ended, now, tracked, next deadline or '', next check or '', intents,
--          outcome stream length}, times in server seconds.
--
-- Outcomes are JSON built by concatenation, so the stored context and status payload
-- (already JSON) go out byte for byte as they came in.

-- @include _task.lua

local limit, ttl = tonumber(ARGV[1]), ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
local ended = 0

-- The round's first write, and one Redis refuses when it is out of memory (maxmemory
-- with noeviction: HSET is denied, deletes are not). The round then fails before it ends
-- anything: a fleet whose checks cannot be recorded must not time its tasks out, nor
-- report its submits uncertain (issue #20 item 5).
local round = redis.call('HMGET', KEYS[12], 'last', 'hold', 'gap_from', 'gap_to')
redis.call('HSET', KEYS[12], 'last', stamp)
-- No round for longer than ARGV[4] (Redis stopped or unreachable, out of memory, or no
-- replica alive): nobody could check tasks or renew intents meanwhile. Hold the endings
-- for ARGV[3] seconds, so the replicas renew their intents and run the overdue last checks
-- before anything is timed out or reported uncertain.
local hold = tonumber(round[2]) or 0
local gap_from, gap_to = tonumber(round[3]), tonumber(round[4])
if round[1] and now - tonumber(round[1]) > tonumber(ARGV[4]) then
  hold = now + tonumber(ARGV[3])
  gap_from, gap_to = tonumber(round[1]), now
  redis.call('HSET', KEYS[12], 'hold', string.format('%.6f', hold), 'gap_from', round[1],
             'gap_to', stamp)
end
local ending = now >= hold
-- A task whose deadline fell in the last gap (or the hold after it) times out for want of
-- a fleet that could check it: its outcome says so, instead of "never checked".
local gap_error = 'null'
if gap_from then
  gap_error = cjson.encode({type = 'CoordinationError', message = string.format(
    'the fleet recorded no progress for %.1f s (Redis out of memory, unreachable or ' ..
    'stopped, or no replica running) before this deadline: no check could be made in time',
    gap_to - gap_from)})
end

local function nullable(value)
  if value == false or value == nil or value == '' then
    return 'null'
  end
  return value
end

local function time_out(rid, task)
  redis.call('ZREM', KEYS[1], rid)
  redis.call('ZREM', KEYS[2], rid)
  redis.call('ZREM', KEYS[3], rid)
  if task then
    redis.call('HDEL', KEYS[8], rid)
    redis.call('ZADD', KEYS[7], now + tonumber(ttl), rid)
    -- A resubmitted task's outcome lists every attempt (the spec keeps the earlier ones).
    local attempts = ''
    if task.sp and task.sp ~= '' then
      local ok, spec = pcall(cjson.decode, task.sp)  -- unreadable: the outcome goes without
      local earlier = ok and type(spec) == 'table' and spec['attempts']
      if type(earlier) == 'table' and #earlier > 0 then
        table.insert(earlier, rid)
        attempts = ',"attempts":' .. cjson.encode(earlier)
      end
    end
    local err, gap = nullable(task.er), ''
    if err == 'null' and gap_from and task.d >= gap_from
        and task.d <= gap_to + tonumber(ARGV[3]) then
      err, gap = gap_error, ',"gap":true'
    end
    local outcome = '{"request_id":' .. cjson.encode(rid) .. ',"kind":"timed-out"'
      .. ',"status":' .. nullable(task.st) .. ',"error":' .. err
      .. ',"context":' .. nullable(task.c) .. ',"polls":' .. (task.p or 0)
      .. ',"elapsed":' .. string.format('%.6f', now - task.s)
      .. ',"final":true,"via":"deadline"' .. attempts .. gap
      -- The trace context goes out as a JSON string (what encode_outcome writes).
      .. ',"trace":' .. (task.tr and cjson.encode(task.tr) or 'null') .. '}'
    if task.m then
      -- A signed fleet (redis/_integrity.py): this outcome cannot be signed here, so it
      -- carries the signed texts it was made of, for the reader to check.
      redis.call('XADD', KEYS[4], '*', 'o', outcome, 'p', cjson.encode(
        {m = task.m, c = task.c, tr = task.tr, sp = task.sp, st = task.st, sm = task.sm,
         er = task.er, em = task.em}))
    else
      redis.call('XADD', KEYS[4], '*', 'o', outcome)
    end
    ended = ended + 1
  end
end

-- A task whose last-check time came: its routine check, if waiting (not claimed: its
-- score is not a lease), moves to the last checks; a claimed one becomes a last check
-- when its check ends (store_end_check.lua). From now on the entry waits for the deadline.
local function promote(rid, task)
  local due = redis.call('ZSCORE', KEYS[3], rid)
  if due and (task.l or 0) == 0 then
    redis.call('ZREM', KEYS[3], rid)
    redis.call('ZADD', KEYS[2], due, rid)
  end
  redis.call('ZADD', KEYS[1], task.d, rid)
end

-- One pass over the entries due by now, `limit` at a time. Each entry up to now is
-- promoted (its score goes up to its deadline) or timed out (it goes), so nothing stays
-- at the front: no cursor, and thousands of tasks sharing one deadline cannot stall it.
-- While endings are held, the deadlines passed stay where they are; the walk then pages
-- past them (from the last one kept, by rank), at most ten pages a round, so promotions
-- go on behind them.
local start, pages = 0, ending and 1 or 10
for _ = 1, pages do
  local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stamp, 'WITHSCORES', 'LIMIT',
                          start, limit)
  local kept
  for i = 1, #rows, 2 do
    local rid, score = rows[i], tonumber(rows[i + 1])
    local task = task_load(KEYS[8], rid)
    if not task then
      -- Forgotten or ended elsewhere half-way: nothing to end, no entry to keep.
      redis.call('ZREM', KEYS[1], rid)
      redis.call('ZREM', KEYS[2], rid)
      redis.call('ZREM', KEYS[3], rid)
    else
      if score < task.d then
        promote(rid, task)
      end
      if task.d <= now then
        if ending then
          time_out(rid, task)
        else
          kept = rid
        end
      end
    end
  end
  if #rows < 2 * limit then
    break
  end
  if kept then
    start = redis.call('ZRANK', KEYS[1], kept) + 1
  end
end

local stale_intents = {}
if ending then
  stale_intents = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', stamp, 'LIMIT', 0, limit)
end
for _, id in ipairs(stale_intents) do
  local started = tonumber(redis.call('HGET', KEYS[6], id)) or now
  local sent = redis.call('HGET', KEYS[11], id)
  redis.call('ZREM', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[11], id)
  -- Only a submit that went on the wire may have created a task (store_send_intent.lua);
  -- its intent carries the error and context members. No request id is known: none is
  -- made up.
  if sent then
    local outcome = '{"request_id":"","kind":"submit-uncertain","status":null,' .. sent
      .. ',"polls":0,"elapsed":' .. string.format('%.6f', now - started)
      .. ',"final":true,"via":"other"}'
    redis.call('XADD', KEYS[4], '*', 'o', outcome)
    ended = ended + 1
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', stamp)
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', stamp, 'LIMIT', 0, limit)) do
  redis.call('HDEL', KEYS[9], rid)
  redis.call('ZREM', KEYS[10], rid)
end

local function first_score(zset)
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  return first[2]
end
local next_due = ''
for _, zset in ipairs({KEYS[2], KEYS[3]}) do
  local score = first_score(zset)
  if score and (next_due == '' or tonumber(score) < tonumber(next_due)) then
    next_due = score
  end
end
return {ended, stamp, redis.call('ZCARD', KEYS[1]), first_score(KEYS[1]) or '', next_due,
        redis.call('ZCARD', KEYS[5]), redis.call('XLEN', KEYS[4])}
