-- change_states: apply compare-and-set state changes in order; later changes see earlier ones.
--
-- ARGV[1] prefix, ARGV[2] a JSON array with one array of 12 strings per change:
-- job id, state, reason (JSON), data (JSON object), expected states
-- (comma-separated, '' = any), lease token, traversed entries (newline-separated
-- JSON arrays [state, reason, data] without the closing bracket), due_at, delay,
-- retry_count, expire_in, crash_count ('' = None).
-- Returns 1 for each change applied and 0 for each change rejected.
--
-- Keys touched (under the prefix, see common.lua):
--   job:<id>, history:<id>          the job changed, and continuations moved on
--   queue:<name>, queues, wakeup:<name>, scheduled, retries, state:<State>, state-counts
--                                   indexes of the old and new states
--   leases, expiring                the lease dropped, the expiry set or cleared
--   continuations:<id>              read and deleted when the job becomes final
--   counter:<name>*                 Succeeded, Failed and Deleted counted

local changes = cjson.decode(ARGV[2])
local now = clock()
local results = {}

local function allowed(job, state, expected, lease_token)
  if expected ~= '' and not string.find(',' .. expected .. ',', ',' .. job.state .. ',', 1, true) then
    return false
  end
  if lease_token ~= '' and (job.state ~= 'Processing' or job.lease_token ~= lease_token) then
    return false
  end
  local targets = TRANSITIONS[job.state]
  return targets ~= nil and targets[state] == true
end

for index, change in ipairs(changes) do
  local id, state = change[1], change[2]
  local job = read_job(id)
  if job and allowed(job, state, change[5], change[6]) then
    local due_at = nil
    if state == 'Scheduled' then
      due_at = optional_number(change[8]) or now + (optional_number(change[9]) or 0)
    end
    local expire_in = optional_number(change[11])
    set_state(job, state, now, {due_at = due_at, expire_in = expire_in,
                                retry_count = optional(change[10]),
                                crash_count = optional(change[12])})
    for entry in string.gmatch(change[7], '[^\n]+') do
      redis.call('RPUSH', P .. 'history:' .. id, entry .. ', ' .. num(now) .. ']')
    end
    add_history(id, state, change[3], with_due(change[4], due_at), now)
    after_state_entered(id, state, now, expire_in)
    results[index] = 1
  else
    results[index] = 0
  end
end
return results
