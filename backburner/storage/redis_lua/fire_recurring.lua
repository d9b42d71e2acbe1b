-- fire_recurring: create the jobs of due occurrences and advance the schedule, atomically.
--
-- ARGV[1] prefix, ARGV[2] recurring id, ARGV[3] expected next_at, ARGV[4] new
-- next_at ('' = None), ARGV[5] the new jobs as one JSON array (see decode_jobs
-- in common.lua).
-- A compare-and-set on next_at: returns {'stale'} and writes nothing when the
-- recurring job is missing, paused or has another next_at. Otherwise returns
-- {'ok'}, or {'missing', parent_id} / {'duplicate', id} with nothing written.
--
-- Keys touched (under the prefix, see common.lua):
--   recurring:<id>               read; next_at, last_at, last_job_id set, errors cleared
--   recurring-due                the new next_at
--   occurrences:<recurring id>   one job per occurrence
--   job:<id>, history:<id>, and the job indexes as in create_jobs.lua

local key = P .. 'recurring:' .. ARGV[2]
local stored = redis.call('HMGET', key, 'next_at', 'paused')
if not stored[1] or stored[2] == '1' or tonumber(stored[1]) ~= tonumber(ARGV[3]) then
  return {'stale'}
end
local jobs = decode_jobs(ARGV[5])
local problem = check_new_jobs(jobs)
if problem then
  return problem
end

local start = clock()
local last = nil
for index, job in ipairs(jobs) do
  if create_job(job, start + (index - 1) * 0.000001) then
    last = job
  end
end

local next_at = optional_number(ARGV[4])
if next_at then
  redis.call('HSET', key, 'next_at', num(next_at))
else
  redis.call('HDEL', key, 'next_at')
end
if last then
  local occurrence = optional_number(last[13])
  if occurrence then
    redis.call('HSET', key, 'last_at', num(occurrence))
  end
  redis.call('HSET', key, 'last_job_id', last[1])
end
redis.call('HSET', key, 'error_count', 0)
redis.call('HDEL', key, 'error', 'retry_at')
index_recurring(ARGV[2], false, next_at)
return {'ok'}
