--[[ fetch: moves up to N jobs from a queue's pending list to one worker's in-flight hash, each
  under a lease id of its own: the token that every later settle of this run must present.

  Lease ids come from the queue's lease counter, so they are unique for the life of the queue:
  a job that returns to the queue and is fetched again (even by the same worker) gets a new
  one, and a stale run holding the old one can change nothing. Payloads are not read.

  Jobs of tasks with limits that wait in their tasks' waiting sets (see admit.lua) come before
  the pending list, oldest enqueue first, as many as their limits let start now: they are admitted here (each takes
  its slot and token), so the worker runs them without asking again.

  When the worker has no suspect in flight, the first job may be a suspect (a job that was in
  flight on two dead workers, see `requeue_inflight.lua`): a worker runs at most one at a time.

  KEYS[1] pending list of the queue
  KEYS[2] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[3] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  KEYS[4] suspects list of the queue
  KEYS[5] lease counter of the queue
  KEYS[6] pause flag of the queue (exists while an operator has paused it)
  KEYS[7] rate hash of the queue (exists while the queue has a rate limit, see rate.lua)
  KEYS[8] set of the queue's tasks with waiting sets (see admit.lua)
  ARGV[1] maximum number of jobs to move
  ARGV[2] worker id (its heartbeat is refreshed: a fetching worker is alive)
  ARGV[3] "1" when the worker may take a suspect
  ARGV[4] what every key of the queue starts with (`prefix:{queue}:`), to which a task's
  `limit:`, `slots:` and `waiting:` keys, and a worker's `active:` key, add their names

  Returns { { payload1, payload2, ... }, 1 when the first job is a suspect else 0, 1 when the
  queue is paused else 0, ms until the rate limit lets a job start (0 when it does not hold any
  back), { leases of the runs admitted from waiting sets }, ms until a waiting job may start by
  its task's rate (0: when one of its runs ends; -1: no job waits for its task's limits), the
  number before the first lease }, oldest first: the k-th payload's lease is that number plus k
  (not sent: a reply of half as many values costs both sides less). The first array is empty
  when there is nothing to run (or the queue is paused, or its rate limit is spent: the jobs
  wait in the queue).
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[6]) == 1 then
  -- Jobs waiting for their tasks' limits are looked at again soon: the pause may end.
  return { {}, 0, 1, 0, {}, rcall('EXISTS', KEYS[8]) == 1 and 500 or -1, 0 }
end
local max = tonumber(ARGV[1])
local limited = rcall('EXISTS', KEYS[7]) == 1
if limited then
  local allowed, wait = rate_allowance(KEYS[7])
  if allowed then
    if allowed == 0 then
      return { {}, 0, 0, wait, {}, -1, 0 }
    end
    max = math.min(max, allowed)
  end
end
local jobs = {}
-- A suspect is taken last, after every step that could fail (a key of the wrong type, a
-- command the ACL denies): a script that fails keeps what it wrote, and a suspect popped then
-- would be in no list and no hash. Its place is kept meanwhile.
local suspect = 0
if ARGV[3] == '1' and rcall('LLEN', KEYS[4]) > 0 then
  suspect = 1
  max = max - 1
end
-- Waiting jobs of limited tasks, as their limits allow: { task, first index, last index, .. }.
local admitted = {}
local limit_wait = -1
local keys_of_queue = ARGV[4]
if rcall('EXISTS', KEYS[8]) == 1 then
  for _, task in ipairs(rcall('SMEMBERS', KEYS[8])) do
    local waiting = keys_of_queue .. 'waiting:' .. task
    local left = rcall('ZCARD', waiting)
    if left == 0 then
      rcall('SREM', KEYS[8], task)
    elseif #jobs < max then
      local limit_key = keys_of_queue .. 'limit:' .. task
      local limits = rcall('HMGET', limit_key, 'max', 'n')
      local task_max, has_rate = tonumber(limits[1]), limits[2] ~= false
      local room, wait = limit_room(limit_key, keys_of_queue .. 'slots:' .. task,
        keys_of_queue .. 'active:', task_max, has_rate)
      local take = math.min(room, max - #jobs, left)
      if take > 0 then
        local first = #jobs + 1
        local popped = rcall('ZPOPMIN', waiting, take)
        for i = 1, #popped, 2 do
          jobs[#jobs + 1] = popped[i]
        end
        admitted[#admitted + 1] = { task, first, #jobs, task_max, has_rate }
      end
      if left > take then
        if limit_wait < 0 or wait < limit_wait then
          limit_wait = wait
        end
      end
    end
  end
end
if #jobs < max then
  local popped = rcall('LPOP', KEYS[1], max - #jobs)
  if popped then
    for _, payload in ipairs(popped) do
      jobs[#jobs + 1] = payload
    end
  end
end
if suspect == 1 then
  local taken = rcall('LPOP', KEYS[4])
  if taken then
    table.insert(jobs, 1, taken)
    for _, range in ipairs(admitted) do
      range[2], range[3] = range[2] + 1, range[3] + 1
    end
  else
    suspect = 0
  end
end
if #jobs == 0 then
  return { {}, 0, 0, 0, {}, limit_wait, 0 }
end
if limited then
  rate_spend(KEYS[7], #jobs)
end
local reply, first_lease = lease_all(KEYS[2], KEYS[5], jobs)
local admitted_leases = {}
for _, range in ipairs(admitted) do
  local task, first, last, task_max, has_rate = range[1], range[2], range[3], range[4], range[5]
  local members = {}
  for i = first, last do
    local lease = reply[2 * i - 1]
    admitted_leases[#admitted_leases + 1] = lease
    members[#members + 1] = ARGV[2] .. '|' .. lease
  end
  limit_take(keys_of_queue .. 'limit:' .. task, keys_of_queue .. 'slots:' .. task, members,
    task_max, has_rate)
end
local time = rcall('TIME')
rcall('ZADD', KEYS[3], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[2])
return { jobs, suspect, 0, 0, admitted_leases, limit_wait, first_lease }
