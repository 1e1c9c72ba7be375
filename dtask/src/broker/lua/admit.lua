--[[ admit: lets one run of a task with limits (`#[task(rate = .., max_running = ..)]`) start,
  or parks its job in the task's waiting set, where it waits in Redis (not an attempt, not in
  any worker's memory) until a fetch finds room for it (see fetch.lua). Jobs already waiting
  go first: a run that arrives while others wait is parked among them, in the order of its
  enqueue time (a job recovered from a dead worker, or retried, keeps its place). Payloads are
  not read.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] limit hash of the task (see limits.lua)
  KEYS[3] slots set of the task
  KEYS[4] waiting set of the task (ZSET payload -> enqueue time, ms)
  KEYS[5] set of the queue's tasks with waiting sets
  ARGV[1] the run's lease
  ARGV[2] the worker id
  ARGV[3] what every in-flight hash's key of the queue starts with (the worker id follows)
  ARGV[4] the task's name
  ARGV[5] most runs at once ("0": no such limit)
  ARGV[6], ARGV[7], ARGV[8] its rate: `n` jobs per `per` ms, `burst` ("0": no rate)
  ARGV[9] the job's enqueue time (ms), its place among the waiting jobs

  The limits are this worker's, written to the limit hash when they differ (the last deploy
  wins). Returns { 1, 0 } when the run may start, { 0, ms until the rate lets one start, 0
  when a run has to end first } when its job was parked, { -1, 0 } when the worker no longer
  holds the lease (a stale run: nothing changed).
]]
local rcall = redis.call
local payload = rcall('HGET', KEYS[1], ARGV[1])
if not payload then
  return { -1, 0 }
end
local known = rcall('HMGET', KEYS[2], 'max', 'n', 'per', 'burst')
if (known[1] or '0') ~= ARGV[5] then
  if ARGV[5] == '0' then
    rcall('HDEL', KEYS[2], 'max')
  else
    rcall('HSET', KEYS[2], 'max', ARGV[5])
  end
end
if (known[2] or '0') ~= ARGV[6] or (known[3] or '0') ~= ARGV[7] or (known[4] or '0') ~= ARGV[8] then
  -- The bucket's state stays: workers of two deploys admitting in turn grant no fresh burst.
  if ARGV[6] == '0' then
    rcall('HDEL', KEYS[2], 'n', 'per', 'burst')
  else
    rcall('HSET', KEYS[2], 'n', ARGV[6], 'per', ARGV[7], 'burst', ARGV[8])
  end
end
local max = tonumber(ARGV[5])
local has_rate = ARGV[6] ~= '0'
local room, wait = 0, 0
if rcall('ZCARD', KEYS[4]) == 0 then
  room, wait = limit_room(KEYS[2], KEYS[3], ARGV[3], max, has_rate)
end
if room >= 1 then
  limit_take(KEYS[2], KEYS[3], { ARGV[2] .. '|' .. ARGV[1] }, max, has_rate)
  return { 1, 0 }
end
rcall('HDEL', KEYS[1], ARGV[1])
rcall('ZADD', KEYS[4], ARGV[9], payload)
rcall('SADD', KEYS[5], ARGV[4])
return { 0, wait }
