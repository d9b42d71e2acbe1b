-- release_lock: release a named lock if the owner holds it.
--
-- KEYS[1] lock:<name> (string: owner, with a Redis TTL)
-- ARGV[1] owner
-- Returns 1 when released, 0 when the owner did not hold it.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
