--[[ adopt: moves every job a blocking wait landed in a worker's landing list into its in-flight
  hash, under fresh lease ids. The landing list exists only for the moment between a blocking
  move and this script (or a crash in between: recovery sweeps it like the hash).

  KEYS[1] landing list of the worker for this queue
  KEYS[2] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[3] lease counter of the queue
  KEYS[4] pause flag of the queue
  KEYS[5] pending list of the queue
  KEYS[6] rate hash of the queue (see rate.lua)

  A job that landed while an operator paused the queue, or beyond what the queue's rate limit
  lets start now, goes back to the head of the queue, where it was.

  Returns { { lease1, payload1, lease2, payload2, ... }, 1 when the queue is paused else 0, ms
  until the rate limit lets a job start (0 when it held none back) }; the first array is empty
  when nothing landed (or the queue is paused, or its rate limit is spent).
]]
local landed = redis.call('LRANGE', KEYS[1], 0, -1)
local paused = redis.call('EXISTS', KEYS[4])
if #landed == 0 then
  return { {}, paused, 0 }
end
-- Everything that may fail (a rate hash of the wrong type) is read before the first write, so
-- that a failing adoption leaves the landed jobs where they are, for the next one.
local keep = #landed
local wait = 0
if paused == 1 then
  keep = 0
elseif redis.call('EXISTS', KEYS[6]) == 1 then
  local allowed, rate_wait = rate_allowance(KEYS[6])
  if allowed then
    keep = math.min(keep, allowed)
    wait = rate_wait
  end
end
redis.call('DEL', KEYS[1])
for i = #landed, keep + 1, -1 do
  redis.call('LPUSH', KEYS[5], landed[i])
end
if keep == 0 then
  return { {}, paused, wait }
end
local adopted = {}
for i = 1, keep do
  adopted[i] = landed[i]
end
rate_spend(KEYS[6], keep)
return { lease_all(KEYS[2], KEYS[3], adopted), 0, 0 }
