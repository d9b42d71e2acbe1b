-- heartbeat: record a server's heartbeat unless it was removed meanwhile.
--
-- KEYS[1] servers (zset: server id -> last heartbeat time, Redis TIME seconds)
-- ARGV[1] server id
-- Returns 1 when recorded, 0 when the server is not registered (removed as dead).

if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  return 0
end
local time = redis.call('TIME')
redis.call('ZADD', KEYS[1], string.format('%.17g', tonumber(time[1]) + tonumber(time[2]) / 1000000),
  ARGV[1])
return 1
