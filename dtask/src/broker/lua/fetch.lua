--[[ fetch: moves up to N jobs from a queue's pending list to one worker's in-flight hash, each
  under a lease id of its own: the token that every later settle of this run must present.

  Lease ids come from the queue's lease counter, so they are unique for the life of the queue:
  a job that returns to the queue and is fetched again (even by the same worker) gets a new
  one, and a stale run holding the old one can change nothing. Payloads are not read.

  When the worker has no suspect in flight, the first job may be a suspect (a job that was in
  flight on two dead workers, see `requeue_inflight.lua`): a worker runs at most one at a time.

  KEYS[1] pending list of the queue
  KEYS[2] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[3] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  KEYS[4] suspects list of the queue
  KEYS[5] lease counter of the queue
  KEYS[6] pause flag of the queue (exists while an operator has paused it)
  KEYS[7] rate hash of the queue (exists while the queue has a rate limit, see rate.lua)
  ARGV[1] maximum number of jobs to move
  ARGV[2] worker id (its heartbeat is refreshed: a fetching worker is alive)
  ARGV[3] "1" when the worker may take a suspect

  Returns { { lease1, payload1, lease2, payload2, ... }, 1 when the first job is a suspect else
  0, 1 when the queue is paused else 0, ms until the rate limit lets a job start (0 when it
  does not hold any back) }, oldest first; the first array is empty when there is nothing to
  run (or the queue is paused, or its rate limit is spent: the jobs wait in the queue).
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[6]) == 1 then
  return { {}, 0, 1, 0 }
end
local max = tonumber(ARGV[1])
local limited = rcall('EXISTS', KEYS[7]) == 1
if limited then
  local allowed, wait = rate_allowance(KEYS[7])
  if allowed then
    if allowed == 0 then
      return { {}, 0, 0, wait }
    end
    max = math.min(max, allowed)
  end
end
local jobs = {}
local suspect = 0
if ARGV[3] == '1' then
  local taken = rcall('LPOP', KEYS[4])
  if taken then
    jobs[1] = taken
    suspect = 1
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
if #jobs == 0 then
  return { {}, 0, 0, 0 }
end
if limited then
  rate_spend(KEYS[7], #jobs)
end
local reply = lease_all(KEYS[2], KEYS[5], jobs)
local time = rcall('TIME')
rcall('ZADD', KEYS[3], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[2])
return { reply, suspect, 0, 0 }
