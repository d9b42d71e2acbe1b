-- due_recurring: read unpaused recurring jobs whose next_at and retry_at have passed.
--
-- ARGV[1] prefix, ARGV[2] the most to return (negative: no limit, as in SQL),
-- ARGV[3] max errors: jobs with that many errors or more are skipped. Writes nothing. Returns one flat array
-- per recurring job, earliest next_at first: id, then its hash fields and values.
--
-- Keys touched (under the prefix, see common.lua):
--   recurring-due       ids with next_at <= now. The set contains one id per
--                       recurring job at most, so reading all due ids is cheap.
--   recurring:<id>      read

local now = clock()
local limit = tonumber(ARGV[2])
local max_errors = tonumber(ARGV[3])
local due = {}
if limit == 0 then
  return due
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'recurring-due', '-inf', num(now))) do
  local key = P .. 'recurring:' .. id
  local stored = redis.call('HMGET', key, 'error_count', 'retry_at', 'paused')
  local retry_at = optional_number(stored[2])
  if tonumber(stored[1] or '0') < max_errors and (retry_at == nil or retry_at <= now)
      and stored[3] ~= '1' then
    local record = redis.call('HGETALL', key)
    table.insert(record, 1, id)
    table.insert(due, record)
    if limit > 0 and #due >= limit then
      break
    end
  end
end
return due
