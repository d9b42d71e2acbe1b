-- announce_server: register a server, or refresh the heartbeat of one already registered.
--
-- KEYS[1] servers (zset: server id -> last heartbeat time, Redis TIME seconds)
-- KEYS[2] server:<id> (hash: queues as JSON, workers, info as JSON, started_at)
-- ARGV[1] server id, ARGV[2] queues (JSON), ARGV[3] workers, ARGV[4] info (JSON)
-- A server already registered keeps its record; only its heartbeat changes.

local time = redis.call('TIME')
local now = string.format('%.17g', tonumber(time[1]) + tonumber(time[2]) / 1000000)
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'queues', ARGV[2], 'workers', ARGV[3], 'info', ARGV[4],
    'started_at', now)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
