-- fetch_jobs: claim up to `limit` Enqueued jobs, searching queues in the given order.
--
-- ARGV[1] prefix, ARGV[2] server id, ARGV[3] limit, ARGV[4] number of queues n,
-- ARGV[5..4+n] queue names, then `limit` fresh lease tokens.
-- Returns one JSON array per claimed job: id, then its hash fields and values.
-- Without hiredis, redis-py parses one JSON string per job about twice as fast as
-- a nested reply.
--
-- Keys touched (under the prefix, see common.lua):
--   queue:<name>         oldest ids popped (FIFO)
--   job:<id>             state Processing, lease_token, server_id, attempt + 1
--   history:<id>         Processing entry
--   state:Processing     claimed ids added
--   leases               token -> id
--   state-counts         Enqueued down, Processing up
--   servers              the claiming server's heartbeat renewed, if it is registered
--   wakeup:<name>        emptied when the queue is empty, refilled with one token
--                        when jobs remain (so a blocked fetcher is not left asleep)

local server_id = ARGV[2]
local limit = tonumber(ARGV[3])
local queue_count = tonumber(ARGV[4])
local first_token = 5 + queue_count
local now = clock()
local now_text = num(now)
local claimed = {}

for position = 1, queue_count do
  if #claimed >= limit then break end
  local popped = redis.call('ZPOPMIN', P .. 'queue:' .. ARGV[4 + position], limit - #claimed)
  for index = 1, #popped, 2 do
    local id = popped[index]
    local key = job_key(id)
    local current = redis.call('HMGET', key, 'state', 'attempt')
    -- The index contains only Enqueued jobs; anything else is a stale entry to drop.
    if current[1] == 'Enqueued' then
      local token = ARGV[first_token + #claimed]
      -- An attempt that is not a whole number counts as 0: HINCRBY would fail half
      -- way through the claim, with jobs already popped from their queue.
      local attempt = math.floor(tonumber(current[2] or '0') or 0) + 1
      redis.call('HSET', key, 'state', 'Processing', 'state_at', now_text,
        'lease_token', token, 'server_id', server_id, 'attempt', attempt)
      redis.call('HSET', P .. 'leases', token, id)
      redis.call('ZADD', P .. 'state:Processing', now_text, id)
      add_history(id, 'Processing', 'null',
        '{"server_id": ' .. cjson.encode(server_id) .. ', "attempt": ' .. attempt .. '}', now)
      local record = redis.call('HGETALL', key)
      table.insert(record, 1, id)
      table.insert(claimed, cjson.encode(record))
    end
  end
end

if #claimed > 0 then
  redis.call('HINCRBY', P .. 'state-counts', 'Enqueued', -#claimed)
  redis.call('HINCRBY', P .. 'state-counts', 'Processing', #claimed)
  -- A claim is a sign of life: renewing a registered server's heartbeat here
  -- keeps a server that was just frozen from taking jobs that the watchdog
  -- would take back at once as a dead server's.
  redis.call('ZADD', P .. 'servers', 'XX', now_text, server_id)
end

for position = 1, queue_count do
  local queue = ARGV[4 + position]
  local wakeup = P .. 'wakeup:' .. queue
  if redis.call('ZCARD', P .. 'queue:' .. queue) == 0 then
    redis.call('DEL', wakeup)
  elseif redis.call('LLEN', wakeup) == 0 then
    redis.call('RPUSH', wakeup, '1')
  end
end
return claimed
