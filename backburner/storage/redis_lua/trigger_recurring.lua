-- trigger_recurring: create a recurring job's job now, leaving its schedule alone.
--
-- ARGV[1] prefix, ARGV[2] recurring id, ARGV[3] one new job in a JSON array
-- (see decode_jobs in common.lua). Returns {'ok'}, {'stale'} when the recurring job
-- does not exist, or {'missing', parent_id} / {'duplicate', id}; nothing is
-- written unless it returns 'ok'.
--
-- Keys touched (under the prefix, see common.lua):
--   recurring:<id>               last_at = now, last_job_id = the new job
--   occurrences:<recurring id>   when the job names an occurrence
--   job:<id>, history:<id>, and the job indexes as in create_jobs.lua

local key = P .. 'recurring:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then
  return {'stale'}
end
local jobs = decode_jobs(ARGV[3])
local problem = check_new_jobs(jobs)
if problem then
  return problem
end
local now = clock()
redis.call('HSET', key, 'last_at', num(now), 'last_job_id', jobs[1][1])
create_job(jobs[1], now)
return {'ok'}
