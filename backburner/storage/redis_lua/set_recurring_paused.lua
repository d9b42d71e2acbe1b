-- set_recurring_paused: pause a recurring job, or resume it with a new next_at.
--
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] '1' to pause or '0' to resume,
-- ARGV[4] next_at on resume ('' = None). Returns 1, or 0 when the id does not exist.
--
-- Keys touched (under the prefix, see common.lua):
--   recurring:<id>      paused, next_at, updated_at
--   recurring-due       the id removed on pause, indexed by next_at on resume

local id = ARGV[2]
local key = P .. 'recurring:' .. id
if redis.call('EXISTS', key) == 0 then
  return 0
end
local now = num(clock())
if ARGV[3] == '1' then
  redis.call('HSET', key, 'paused', 1, 'updated_at', now)
  index_recurring(id, true, nil)
  return 1
end
local next_at = optional_number(ARGV[4])
redis.call('HSET', key, 'paused', 0, 'updated_at', now)
if next_at then
  redis.call('HSET', key, 'next_at', num(next_at))
else
  redis.call('HDEL', key, 'next_at')
end
index_recurring(id, false, next_at)
return 1
