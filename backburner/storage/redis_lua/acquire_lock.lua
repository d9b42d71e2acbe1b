-- acquire_lock: take a named lock, or extend it when the owner already holds it.
--
-- KEYS[1] lock:<name> (string: owner, with a Redis TTL = the lock's lifetime)
-- ARGV[1] owner, ARGV[2] lifetime in milliseconds (0 or less: expires at once)
-- Returns 1 when the owner holds the lock afterwards, 0 when another owner holds it.

local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return 1
