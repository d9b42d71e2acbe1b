-- enqueue_due_jobs: move Scheduled jobs whose due time has passed to Enqueued.
--
-- ARGV[1] prefix, ARGV[2] the most jobs to move.
-- Returns the ids moved, earliest due first.
--
-- Keys touched (under the prefix, see common.lua):
--   scheduled                        due ids read and removed
--   job:<id>, history:<id>           state Enqueued, "Due time reached" entry
--   queue:<name>, queues, wakeup:<name>, state-counts   indexes of the new state

local now = clock()
local ids = redis.call('ZRANGEBYSCORE', P .. 'scheduled', '-inf', num(now),
  'LIMIT', 0, tonumber(ARGV[2]))
local moved = {}
for _, id in ipairs(ids) do
  local job = read_job(id)
  if job and job.state == 'Scheduled' then
    set_state(job, 'Enqueued', now, {})
    add_history(id, 'Enqueued', '"Due time reached"', '{}', now)
    table.insert(moved, id)
  else
    -- The index contains only Scheduled jobs; anything else is a stale entry to drop.
    redis.call('ZREM', P .. 'scheduled', id)
  end
end
return moved
