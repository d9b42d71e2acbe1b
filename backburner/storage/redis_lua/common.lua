-- Helpers shared by the job scripts. redis.py prepends this file, after the
-- constants it generates from backburner/states.py and
-- backburner/storage/counters.py, to every script that changes jobs.
--
-- Every job script takes the key prefix as ARGV[1] and names its keys from
-- it, so KEYS[1] is only a routing key (the state-counts hash). On Redis
-- Cluster all keys of one app must share a slot: use a hash tag in the
-- prefix, such as "{backburner}:".
--
-- Times are float seconds since the Unix epoch from Redis TIME. Numbers go
-- to Redis as strings formatted with %.17g, because redis.call would format
-- a Lua number with %.14g and lose the microseconds.
--
-- Keys, under the prefix:
--   job:<id>            hash: function, payload, queue, state, created_at, state_at,
--                       attempt, retry_count, crash_count, lease_token, server_id,
--                       due_at, expire_at, parent_id, continue_on (a missing field
--                       means none, or 0 for the counts)
--   history:<id>        list: one JSON array [state, reason, data, at] per state entered
--   queue:<name>        zset: ids of the queue's Enqueued jobs, score = time enqueued
--   queues              set: names of every queue that had an Enqueued job
--   wakeup:<name>       list: wake-up tokens; fetchers block on it while the queue is empty
--   scheduled           zset: ids of Scheduled jobs, score = due time
--   state:<State>       zset: ids of Processing, Awaiting, Succeeded, Failed and Deleted
--                       jobs, score = time of the state change; the Succeeded and
--                       Deleted sets keep only the newest LIST_CAP ids
--   state-counts        hash: state name -> number of jobs in that state
--   expiring            zset: ids of jobs with an expiry time, score = expire_at
--   leases              hash: lease token -> id of the Processing job holding it
--   continuations:<id>  set: ids of Awaiting jobs whose parent is job <id>
--   children:<id>       set: ids of every job created as a continuation of job <id>
--   retries             zset: ids of Scheduled jobs with a retry count, score = due time
--   occurrences:<recurring id>  hash: occurrence time -> id of the job created for it
--   counter:<name>                     string: all-time count (succeeded, failed, deleted)
--   counter:<name>:<resolution>:<start> string: count in one history bucket, with a TTL
--   recurring:<id>      hash: cron, tz, function, payload, queue, misfire, paused (0 or 1),
--                       next_at, last_at, last_job_id, created_at, updated_at, error,
--                       error_count, retry_at
--   recurring-ids       zset: every recurring job id, score 0 (so ordered by id)
--   recurring-due       zset: ids of unpaused recurring jobs with a next occurrence,
--                       score = next_at

local P = ARGV[1]

local function clock()
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end

local function num(value)
  return string.format('%.17g', value)
end

-- Optional number or string arguments arrive as '' for None.
local function optional_number(text)
  if text == nil or text == '' then return nil end
  return tonumber(text)
end

local function optional(text)
  if text == nil or text == '' or text == false then return nil end
  return text
end

local function job_key(id)
  return P .. 'job:' .. id
end

-- Read the fields that state changes need; nil when the job does not exist.
local function read_job(id)
  local values = redis.call('HMGET', job_key(id), 'state', 'queue', 'lease_token',
    'expire_at', 'server_id', 'crash_count', 'continue_on')
  if not values[1] then return nil end
  return {id = id, state = values[1], queue = values[2], lease_token = optional(values[3]),
          expire_at = optional(values[4]), server_id = optional(values[5]),
          crash_count = tonumber(values[6] or '0') or 0, continue_on = optional(values[7])}
end

-- Append a history entry. reason_json and data_json are JSON text already.
local function add_history(id, state, reason_json, data_json, at)
  redis.call('RPUSH', P .. 'history:' .. id,
    '[' .. cjson.encode(state) .. ',' .. reason_json .. ',' .. data_json .. ',' .. num(at) .. ']')
end

-- Add "due_at" to a JSON object written by Python's json.dumps (it ends with "}").
-- A "due_at" already in data_json comes first, so a JSON reader keeps this one.
local function with_due(data_json, due_at)
  if due_at == nil then return data_json end
  local due = '"due_at": ' .. num(due_at)
  if data_json == '{}' then return '{' .. due .. '}' end
  return string.sub(data_json, 1, -2) .. ', ' .. due .. '}'
end

-- Add one to a counter's total and to its current minute and hour buckets.
local function count(name, at)
  redis.call('INCR', P .. 'counter:' .. name)
  for _, resolution in ipairs(RESOLUTIONS) do
    local start = math.floor(at - at % resolution[2])
    local key = P .. 'counter:' .. name .. ':' .. resolution[1] .. ':' .. string.format('%d', start)
    if redis.call('INCR', key) == 1 then
      redis.call('EXPIRE', key, resolution[3])
    end
  end
end

local function index_key(state, queue)
  if state == 'Enqueued' then return P .. 'queue:' .. queue end
  if state == 'Scheduled' then return P .. 'scheduled' end
  return P .. 'state:' .. state
end

-- Index a job that entered `state`: score is the time enqueued, the due time
-- or the time of the change. An enqueued job also leaves a wake-up token for
-- blocked fetchers, up to WAKE_CAP tokens per queue.
local function add_to_index(id, state, queue, score)
  local key = index_key(state, queue)
  redis.call('ZADD', key, num(score), id)
  redis.call('HINCRBY', P .. 'state-counts', state, 1)
  if state == 'Enqueued' then
    redis.call('SADD', P .. 'queues', queue)
    local wakeup = P .. 'wakeup:' .. queue
    if redis.call('LLEN', wakeup) < WAKE_CAP then
      redis.call('RPUSH', wakeup, '1')
    end
  elseif CAPPED_LISTS[state] then
    local extra = redis.call('ZCARD', key) - LIST_CAP
    if extra > 0 then
      redis.call('ZREMRANGEBYRANK', key, 0, extra - 1)
    end
  end
end

local function remove_from_index(id, state, queue)
  redis.call('ZREM', index_key(state, queue), id)
  redis.call('HINCRBY', P .. 'state-counts', state, -1)
  if state == 'Scheduled' then
    redis.call('ZREM', P .. 'retries', id)
  end
end

-- Move a job (as read_job returns it) to `state` at `now`, as SQLiteStorage's
-- _set_state does: drop the lease and the due and expiry times, then set the
-- ones the new state has. options: due_at (Scheduled), expire_in (final
-- states; nil or 0 means never), retry_count, crash_count, crash (add one to
-- crash_count).
local function set_state(job, state, now, options)
  local key = job_key(job.id)
  remove_from_index(job.id, job.state, job.queue)
  if job.lease_token then
    redis.call('HDEL', P .. 'leases', job.lease_token)
  end
  if job.expire_at then
    redis.call('ZREM', P .. 'expiring', job.id)
  end
  redis.call('HDEL', key, 'lease_token', 'server_id', 'due_at', 'expire_at')

  local fields = {'state', state, 'state_at', num(now)}
  local score = now
  if state == 'Scheduled' then
    score = options.due_at
    table.insert(fields, 'due_at')
    table.insert(fields, num(options.due_at))
  end
  if FINAL_STATES[state] and options.expire_in then
    local expire_at = now + options.expire_in
    table.insert(fields, 'expire_at')
    table.insert(fields, num(expire_at))
    redis.call('ZADD', P .. 'expiring', num(expire_at), job.id)
  end
  if options.retry_count then
    table.insert(fields, 'retry_count')
    table.insert(fields, options.retry_count)
  end
  if options.crash then
    -- Set, not HINCRBY, which fails half way through the script on a value that is
    -- not a whole number (read_job reads one as 0).
    table.insert(fields, 'crash_count')
    table.insert(fields, job.crash_count + 1)
  elseif options.crash_count then
    table.insert(fields, 'crash_count')
    table.insert(fields, options.crash_count)
  end
  redis.call('HSET', key, unpack(fields))
  add_to_index(job.id, state, job.queue, score)
  if state == 'Scheduled' then
    local retries = options.retry_count or redis.call('HGET', key, 'retry_count')
    if (tonumber(retries or '0') or 0) > 0 then
      redis.call('ZADD', P .. 'retries', num(score), job.id)
    end
  end
  job.state = state
  job.lease_token = nil
end

-- The state an Awaiting job moves to when its parent is in parent_state, or
-- nil while the parent is not final (states.continuation_outcome).
local function continuation_outcome(on, parent_state)
  if not FINAL_STATES[parent_state] then return nil end
  local triggers = CONTINUATION_TRIGGERS[on]
  if triggers and triggers[parent_state] then return 'Enqueued' end
  return 'Deleted'
end

local function move_continuation(job, parent_id, parent_state, outcome, now, expire_in)
  local reason
  if outcome == 'Enqueued' then
    reason = 'Parent job ' .. parent_id .. ' reached ' .. parent_state
  else
    reason = 'Continuation condition not met: parent job ' .. parent_id .. ' ended ' .. parent_state
  end
  set_state(job, outcome, now, {expire_in = expire_in})
  add_history(job.id, outcome, cjson.encode(reason),
    '{"parent_id": ' .. cjson.encode(parent_id) .. '}', now)
  if outcome == 'Deleted' then
    count('deleted', now)
  end
end

-- Move on the Awaiting continuations of a job that entered a final state. A
-- continuation deleted because its parent ended in the wrong state releases
-- its own continuations in turn, so this walks the whole chain.
local function release_continuations(id, state, now, expire_in)
  local pending = {{id, state}}
  while #pending > 0 do
    local parent = table.remove(pending)
    local key = P .. 'continuations:' .. parent[1]
    local children = redis.call('SMEMBERS', key)
    -- Every Awaiting child moves on now and no job ever returns to Awaiting,
    -- so the set is not needed any more.
    redis.call('DEL', key)
    for _, child_id in ipairs(children) do
      local child = read_job(child_id)
      if child and child.state == 'Awaiting' then
        local outcome = continuation_outcome(child.continue_on or 'succeeded', parent[2])
        if outcome then
          move_continuation(child, parent[1], parent[2], outcome, now, expire_in)
          if outcome == 'Deleted' then
            table.insert(pending, {child_id, outcome})
          end
        end
      end
    end
  end
end

local function after_state_entered(id, state, now, expire_in)
  if COUNTED_STATES[state] then
    count(COUNTED_STATES[state], now)
  end
  if FINAL_STATES[state] then
    release_continuations(id, state, now, expire_in)
  end
end

-- New jobs arrive in one argument, a JSON array with one array of 13 strings
-- per job: id, function, payload, queue, state, reason (JSON), due_at, delay,
-- parent_id, continue_on, expire_in, recurring_id, occurrence ('' = None).
-- One JSON argument is cheaper for redis-py to encode than 13 arguments per job.
local function decode_jobs(text)
  return cjson.decode(text)
end

-- Check new jobs (as decode_jobs returns them). Scripts do not roll back, so
-- this runs before anything is written. Returns nil, or {'duplicate', id} or
-- {'missing', parent_id}.
local function check_new_jobs(jobs)
  local batch = {}
  for _, job in ipairs(jobs) do
    local id = job[1]
    if batch[id] or redis.call('EXISTS', job_key(id)) == 1 then
      return {'duplicate', id}
    end
    if job[5] == 'Awaiting' then
      local parent_id = job[9]
      if parent_id == '' or
          (not batch[parent_id] and redis.call('EXISTS', job_key(parent_id)) == 0) then
        return {'missing', parent_id}
      end
    end
    batch[id] = true
  end
  return nil
end

-- Create one new job (an array as decode_jobs returns), with its first
-- history entry, as SQLiteStorage's _insert_job does. Returns the state it
-- ends in, or nil when its occurrence of a recurring job already has a job.
local function create_job(job, now)
  local id, queue, state = job[1], job[4], job[5]
  local parent_id, continue_on = optional(job[9]), optional(job[10])
  local recurring_id, occurrence = optional(job[12]), optional_number(job[13])
  local occurrences = nil
  if recurring_id and occurrence then
    occurrences = P .. 'occurrences:' .. recurring_id
    if redis.call('HEXISTS', occurrences, num(occurrence)) == 1 then
      return nil
    end
  end
  local due_at = nil
  if state == 'Scheduled' then
    due_at = optional_number(job[7]) or now + (optional_number(job[8]) or 0)
  end

  local fields = {'function', job[2], 'payload', job[3], 'queue', queue,
                  'state', state, 'created_at', num(now), 'state_at', num(now)}
  local extra = {due_at = due_at and num(due_at), parent_id = parent_id,
                 continue_on = continue_on, recurring_id = recurring_id,
                 occurrence = occurrence and num(occurrence)}
  for _, name in ipairs({'due_at', 'parent_id', 'continue_on', 'recurring_id', 'occurrence'}) do
    if extra[name] then
      table.insert(fields, name)
      table.insert(fields, extra[name])
    end
  end
  redis.call('HSET', job_key(id), unpack(fields))
  if parent_id then
    redis.call('SADD', P .. 'children:' .. parent_id, id)
  end
  if occurrences then
    redis.call('HSET', occurrences, num(occurrence), id)
  end
  add_to_index(id, state, queue, due_at or now)
  add_history(id, state, job[6], with_due('{}', due_at), now)

  if state == 'Awaiting' then
    local parent = read_job(parent_id)
    local outcome = nil
    if continue_on then
      outcome = continuation_outcome(continue_on, parent.state)
    end
    if outcome then
      move_continuation({id = id, state = state, queue = queue}, parent_id, parent.state,
        outcome, now, optional_number(job[11]))
      return outcome
    end
    redis.call('SADD', P .. 'continuations:' .. parent_id, id)
  end
  return state
end

-- Keep a recurring job's entry in recurring-due in step with its paused flag and next_at.
local function index_recurring(id, paused, next_at)
  if paused or next_at == nil then
    redis.call('ZREM', P .. 'recurring-due', id)
  else
    redis.call('ZADD', P .. 'recurring-due', num(next_at), id)
  end
end
