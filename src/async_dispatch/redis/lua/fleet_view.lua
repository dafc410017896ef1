-- Read a fleet's state for `async-dispatch fleet` (read only; one snapshot, one clock).
--
-- KEYS[1] deadlines   KEYS[2] last checks   KEYS[3] routine checks   KEYS[4] outcome stream
-- KEYS[5] intents     KEYS[6] intent start times   KEYS[7] parked ids   KEYS[8] the bucket
-- KEYS[9] tasks (hash, _task.lua)
-- ARGV[1] consumer group   ARGV[2] most check entries to inspect
--
-- Returns, times as strings in server seconds (microseconds for the bucket):
--   {now, tracked, due now, last checks, next check or '', next deadline or '',
--    inspected, truncated (0/1), leased, stale leases, {claimer, count, ...},
--    outcomes (XLEN), pending (XPENDING), {consumer, count, ...},
--    intents, oldest intent start or '', parked,
--    bucket now (us), tat (us) or '', paused until (us) or '',
--    found (how many of KEYS exist: 0 means no fleet of this name holds anything here)}
--
-- Leases are found by reading the record of each entry of the check sets, at most ARGV[2]
-- of them (the soonest first): a claimed check's score is its lease expiry, so the claims
-- sit among the earliest scores. The cost is one HGET per entry inspected.

-- @include _task.lua

local group, limit = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)

local function first_score(zset)
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  return first[2]
end

local due = redis.call('ZCOUNT', KEYS[2], '-inf', stamp) + redis.call('ZCOUNT', KEYS[3], '-inf', stamp)
local next_due = ''
for _, zset in ipairs({KEYS[2], KEYS[3]}) do
  local score = first_score(zset)
  if score and (next_due == '' or tonumber(score) < tonumber(next_due)) then
    next_due = score
  end
end

-- Claims: a lease > now is a live lease, 0 < lease <= now one whose replica stopped
-- renewing it (dead or stuck): it is due again, for whoever claims it next.
local inspected, leased, stale = 0, 0, 0
local by = {}
for _, zset in ipairs({KEYS[2], KEYS[3]}) do
  local left = limit - inspected
  if left > 0 then
    for _, rid in ipairs(redis.call('ZRANGE', zset, 0, left - 1)) do
      inspected = inspected + 1
      local task = task_load(KEYS[9], rid) or {}
      local lease = task.l or 0
      if lease > now then
        leased = leased + 1
        local who = task.b or ''
        by[who] = (by[who] or 0) + 1
      elseif lease > 0 then
        stale = stale + 1
      end
    end
  end
end
local truncated = 0
if inspected < redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]) then
  truncated = 1
end
local claimers = {}
for who, n in pairs(by) do
  claimers[#claimers + 1] = who
  claimers[#claimers + 1] = n
end

-- Outcomes: XLEN counts every entry not yet acknowledged (acknowledged ones are deleted),
-- XPENDING those read by a replica and not yet acknowledged, per replica.
local outcomes = redis.call('XLEN', KEYS[4])
local pending, consumers = 0, {}
if outcomes > 0 then
  local summary = redis.pcall('XPENDING', KEYS[4], group)
  if type(summary) == 'table' and not summary.err then
    pending = tonumber(summary[1]) or 0
    for _, row in ipairs(summary[4] or {}) do
      consumers[#consumers + 1] = row[1]
      consumers[#consumers + 1] = tonumber(row[2]) or 0
    end
  end
end

local oldest = ''
for _, started in ipairs(redis.call('HVALS', KEYS[6])) do
  if oldest == '' or tonumber(started) < tonumber(oldest) then
    oldest = started
  end
end

-- The next deadline: the deadlines zset is scored by the next time the expiry round looks
-- at a task (_task.lua), at most its deadline; walk it from the front until no later
-- entry can have an earlier deadline (a score is never above the record's deadline).
local next_deadline
local entries = redis.call('ZRANGE', KEYS[1], 0, limit - 1, 'WITHSCORES')
for i = 1, #entries, 2 do
  if next_deadline and tonumber(entries[i + 1]) >= next_deadline then
    break
  end
  local task = task_load(KEYS[9], entries[i])
  local deadline = task and task.d or tonumber(entries[i + 1])
  if not next_deadline or deadline < next_deadline then
    next_deadline = deadline
  end
end

local bucket = redis.call('HMGET', KEYS[8], 'tat', 'paused_until')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

return {stamp, redis.call('ZCARD', KEYS[1]), due, redis.call('ZCARD', KEYS[2]), next_due,
        next_deadline and seconds(next_deadline) or '', inspected, truncated, leased, stale,
        claimers, outcomes, pending,
        consumers, redis.call('ZCARD', KEYS[5]), oldest, redis.call('ZCARD', KEYS[7]),
        string.format('%d', now_us), bucket[1] or '', bucket[2] or '',
        redis.call('EXISTS', unpack(KEYS))}
