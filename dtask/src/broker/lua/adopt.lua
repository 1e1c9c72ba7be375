--[[ adopt: moves every job a blocking wait landed in a worker's landing list into its in-flight
  hash, under fresh lease ids. The landing list exists only for the moment between a blocking
  move and this script (or a crash in between: recovery sweeps it like the hash).

  KEYS[1] landing list of the worker for this queue
  KEYS[2] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[3] lease counter of the queue
  KEYS[4] pause flag of the queue
  KEYS[5] pending list of the queue

  A job that landed while an operator paused the queue goes back to the head of the queue,
  where it was.

  Returns { { lease1, payload1, lease2, payload2, ... }, 1 when the queue is paused else 0 };
  the first array is empty when nothing landed (or the queue is paused).
]]
local landed = redis.call('LRANGE', KEYS[1], 0, -1)
local paused = redis.call('EXISTS', KEYS[4])
if #landed == 0 then
  return { {}, paused }
end
redis.call('DEL', KEYS[1])
if paused == 1 then
  for i = #landed, 1, -1 do
    redis.call('LPUSH', KEYS[5], landed[i])
  end
  return { {}, 1 }
end
return { lease_all(KEYS[2], KEYS[3], landed), 0 }
