-- expire: delete jobs whose expiry time has passed, with their history.
--
-- ARGV[1] prefix, ARGV[2] the most jobs to delete. Returns the number deleted.
-- Counter buckets and locks need no sweep: their keys carry a Redis TTL.
--
-- Keys touched (under the prefix, see common.lua):
--   expiring                               ids due read and removed
--   job:<id>, history:<id>, continuations:<id>, children:<id>   deleted
--   children:<parent id>                   the job left its parent's set
--   occurrences:<recurring id>             the job's occurrence freed
--   state:<State>, queue:<name>, scheduled, retries, state-counts, leases
--                                          the job removed from its indexes

local now = clock()
local ids = redis.call('ZRANGEBYSCORE', P .. 'expiring', '-inf', num(now),
  'LIMIT', 0, tonumber(ARGV[2]))
local deleted = 0
for _, id in ipairs(ids) do
  local job = read_job(id)
  if job then
    remove_from_index(id, job.state, job.queue)
    if job.lease_token then
      redis.call('HDEL', P .. 'leases', job.lease_token)
    end
    local links = redis.call('HMGET', job_key(id), 'recurring_id', 'occurrence', 'parent_id')
    if links[1] and links[2] then
      redis.call('HDEL', P .. 'occurrences:' .. links[1], links[2])
    end
    if links[3] then
      redis.call('SREM', P .. 'children:' .. links[3], id)
    end
    redis.call('DEL', job_key(id), P .. 'history:' .. id, P .. 'continuations:' .. id,
      P .. 'children:' .. id)
    deleted = deleted + 1
  end
  redis.call('ZREM', P .. 'expiring', id)
end
return deleted
