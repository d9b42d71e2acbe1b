-- release_leases: put back jobs claimed by a fetch whose reply never arrived.
--
-- When the connection fails during fetch_jobs, the claim may have run without
-- the caller learning which jobs it got. Those jobs would stay Processing under
-- a live server, never performed and never recovered, so the next fetch puts
-- them back in their queues with this script.
--
-- ARGV[1] prefix, ARGV[2] reason (JSON), then the lease tokens of the lost fetch.
-- Returns the ids of the jobs put back.
--
-- Keys touched (under the prefix, see common.lua):
--   leases                           token -> id, read and removed
--   job:<id>, history:<id>           state Enqueued, with the reason
--   state:Processing, queue:<name>, queues, wakeup:<name>, state-counts
--                                    indexes of the old and new states

local now = clock()
local released = {}
for index = 3, #ARGV do
  local id = redis.call('HGET', P .. 'leases', ARGV[index])
  if id then
    local job = read_job(id)
    if job and job.state == 'Processing' and job.lease_token == ARGV[index] then
      set_state(job, 'Enqueued', now, {})
      add_history(id, 'Enqueued', ARGV[2], '{}', now)
      table.insert(released, id)
    else
      redis.call('HDEL', P .. 'leases', ARGV[index])
    end
  end
end
return released
