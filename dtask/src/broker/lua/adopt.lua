--[[ adopt: moves every job a blocking wait landed in a worker's landing list into its in-flight
  hash, under fresh lease ids. The landing list exists only for the moment between a blocking
  move and this script (or a crash in between: recovery sweeps it like the hash).

  KEYS[1] landing list of the worker for this queue
  KEYS[2] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[3] lease counter of the queue

  Returns { lease1, payload1, lease2, payload2, ... }, empty when nothing landed.
]]
local landed = redis.call('LRANGE', KEYS[1], 0, -1)
if #landed == 0 then
  return {}
end
redis.call('DEL', KEYS[1])
return lease_all(KEYS[2], KEYS[3], landed)
