-- A claimed task whose attempt failed is about to be resubmitted: mark it 'sending', under
-- the claim's fencing token, so that if this replica dies mid-submit, the replica that
-- claims the task next finds the mark and ends it SUBMIT_UNCERTAIN instead of sending it
-- a second time (the first resubmission may have created a task).
--
-- KEYS[1]  tasks (hash, _task.lua)
-- ARGV[1]  request id   ARGV[2]  fencing token of the claim
--
-- Returns {1} if marked, {0} if the claim was lost or the task is not waiting to go again.

-- @include _task.lua

local task = task_load(KEYS[1], ARGV[1])
if not task or tostring(task.t or 0) ~= ARGV[2] then
  return {0}
end
if task.ph ~= 'wait' then
  return {0}
end
task.ph = 'sending'
task_save(KEYS[1], ARGV[1], task)
return {1}
