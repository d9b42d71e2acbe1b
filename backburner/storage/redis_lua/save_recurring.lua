-- save_recurring: create a recurring job, or update the one with the same id.
--
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] cron, ARGV[4] tz, ARGV[5] function,
-- ARGV[6] payload, ARGV[7] queue, ARGV[8] misfire, ARGV[9] next_at ('' = None).
-- An update keeps paused and last_job_id, clears errors, and keeps next_at
-- and last_at while cron and tz are unchanged (next_at only if the job had
-- no errors), so that saving at every application start does not shift the
-- schedule.
--
-- Keys touched (under the prefix, see common.lua):
--   recurring:<id>      written
--   recurring-ids       the id added
--   recurring-due       the id indexed by next_at unless paused

local id = ARGV[2]
local key = P .. 'recurring:' .. id
local now = num(clock())
local next_at = optional_number(ARGV[9])
local fields = {'cron', ARGV[3], 'tz', ARGV[4], 'function', ARGV[5], 'payload', ARGV[6],
                'queue', ARGV[7], 'misfire', ARGV[8], 'updated_at', now, 'error_count', 0}
local paused = false
local last_at = nil

local stored = redis.call('HMGET', key, 'cron', 'tz', 'error_count', 'next_at', 'last_at',
  'paused')
if stored[1] then
  local same_schedule = stored[1] == ARGV[3] and stored[2] == ARGV[4]
  if same_schedule and tonumber(stored[3] or '0') == 0 then
    next_at = optional_number(stored[4])
  end
  if same_schedule then
    last_at = optional_number(stored[5])
  end
  paused = stored[6] == '1'
else
  table.insert(fields, 'created_at')
  table.insert(fields, now)
  table.insert(fields, 'paused')
  table.insert(fields, 0)
  redis.call('ZADD', P .. 'recurring-ids', 0, id)
end

redis.call('HDEL', key, 'next_at', 'last_at', 'error', 'retry_at')
if next_at then
  table.insert(fields, 'next_at')
  table.insert(fields, num(next_at))
end
if last_at then
  table.insert(fields, 'last_at')
  table.insert(fields, num(last_at))
end
redis.call('HSET', key, unpack(fields))
index_recurring(id, paused, next_at)
return 1
