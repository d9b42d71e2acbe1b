-- record_recurring_error: store a scheduling error and count it.
--
-- ARGV[1] prefix, ARGV[2] id, ARGV[3] error text, ARGV[4] retry_at ('' = None).
-- Does nothing when the id does not exist. The job stays in recurring-due;
-- due_recurring.lua skips it until retry_at, or for good once it has too many errors.
--
-- Keys touched (under the prefix, see common.lua):
--   recurring:<id>      error, error_count + 1, retry_at

local key = P .. 'recurring:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then
  return 0
end
redis.call('HSET', key, 'error', ARGV[3])
redis.call('HINCRBY', key, 'error_count', 1)
local retry_at = optional_number(ARGV[4])
if retry_at then
  redis.call('HSET', key, 'retry_at', num(retry_at))
else
  redis.call('HDEL', key, 'retry_at')
end
return 1
