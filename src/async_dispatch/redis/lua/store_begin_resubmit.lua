-- A claimed task whose attempt failed is about to be resubmitted: mark it 'sending', under
-- the claim's fencing token, so that if this replica dies mid-submit, the replica that
-- claims the task next finds the mark and ends it SUBMIT_UNCERTAIN instead of sending it
-- a second time (the first resubmission may have created a task).
--
-- KEYS[1]  the task's hash   ARGV[1]  fencing token of the claim
--
-- Returns {1} if marked, {0} if the claim was lost or the task is not waiting to go again.

if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return {0}
end
if redis.call('HGET', KEYS[1], 'phase') ~= 'wait' then
  return {0}
end
redis.call('HSET', KEYS[1], 'phase', 'sending')
return {1}
