-- create_jobs: create jobs with their first state and history entry, all or none.
--
-- ARGV[1] prefix, ARGV[2] the new jobs as one JSON array (see decode_jobs in common.lua).
-- Returns {'ok'}, {'missing', parent_id} or {'duplicate', id}; nothing is
-- written unless it returns 'ok'. A job for an occurrence of a recurring job
-- that already has one is skipped.
--
-- Keys touched (under the prefix, see common.lua):
--   job:<id>, history:<id>       written for each new job (and for a continuation
--                                moved on at once)
--   job:<parent_id>              read: an Awaiting job's parent must exist
--   queue:<name>, queues, wakeup:<name>, scheduled, state:<State>, state-counts
--                                indexes of the new jobs
--   occurrences:<recurring id>   read and written for jobs of recurring jobs
--   continuations:<parent_id>    an Awaiting job joins its parent's set
--   children:<parent_id>         a continuation joins its parent's set
--   expiring, counter:deleted*   a continuation deleted at once (parent already
--                                final in a state it does not run on)

local jobs = decode_jobs(ARGV[2])
local problem = check_new_jobs(jobs)
if problem then
  return problem
end

local start = clock()
for index, job in ipairs(jobs) do
  -- One microsecond apart keeps the batch in order in the queue and the lists.
  create_job(job, start + (index - 1) * 0.000001)
end
return {'ok'}
