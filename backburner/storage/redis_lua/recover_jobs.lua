-- recover_jobs: take back Processing jobs whose server has stopped heartbeating.
--
-- ARGV[1] prefix, ARGV[2] server timeout (seconds), ARGV[3] max crash requeues.
-- A job whose server has no heartbeat since now - timeout (or none at all) goes
-- back to its queue, or to Failed once it was put back max crash requeues
-- times. Servers whose heartbeat is older than that are removed.
-- Returns a flat array: job id, server id ('' for none), new state, ...
--
-- Keys touched (under the prefix, see common.lua):
--   state:Processing                 every Processing id is checked. The set contains
--                                    one id per busy worker, so it stays small.
--   servers                          zset: server id -> last heartbeat time
--   server:<id>                      hash of a dead server, deleted
--   job:<id>, history:<id>           state Enqueued or Failed, crash_count + 1
--   queue:<name>, queues, wakeup:<name>, state:Failed, state-counts, leases
--                                    indexes of the old and new states
--   counter:failed*                  jobs given up on are counted as failed

local now = clock()
local cutoff = now - tonumber(ARGV[2])
local max_crash_requeues = tonumber(ARGV[3])
local servers = P .. 'servers'
local alive = {}
local recovered = {}

local function is_alive(server_id)
  if server_id == nil then return false end
  if alive[server_id] == nil then
    local heartbeat = redis.call('ZSCORE', servers, server_id)
    alive[server_id] = heartbeat ~= false and tonumber(heartbeat) >= cutoff
  end
  return alive[server_id]
end

for _, id in ipairs(redis.call('ZRANGE', P .. 'state:Processing', 0, -1)) do
  local job = read_job(id)
  if job and job.state == 'Processing' and not is_alive(job.server_id) then
    local server_name = job.server_id or 'None'
    local crashes = job.crash_count + 1
    local state, reason
    if job.crash_count >= max_crash_requeues then
      state = 'Failed'
      reason = 'Server ' .. server_name .. ' stopped while performing the job, ' ..
        string.format('%d', crashes) .. ' times in all; giving up so it cannot crash servers forever'
    else
      state = 'Enqueued'
      reason = 'Server ' .. server_name .. ' stopped heartbeating; job put back in its queue'
    end
    set_state(job, state, now, {crash = true})
    local server_json = 'null'
    if job.server_id then server_json = cjson.encode(job.server_id) end
    add_history(id, state, cjson.encode(reason),
      '{"server_id": ' .. server_json .. ', "crash_count": ' .. string.format('%d', crashes) .. '}', now)
    if state == 'Failed' then
      count('failed', now)
    end
    table.insert(recovered, id)
    table.insert(recovered, job.server_id or '')
    table.insert(recovered, state)
  elseif job == nil then
    -- The index contains only Processing jobs; a missing job is a stale entry to drop.
    redis.call('ZREM', P .. 'state:Processing', id)
  end
end

local dead = redis.call('ZRANGEBYSCORE', servers, '-inf', '(' .. num(cutoff))
for _, server_id in ipairs(dead) do
  redis.call('DEL', P .. 'server:' .. server_id)
end
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', servers, '-inf', '(' .. num(cutoff))
end
return recovered
