--[[ ack: takes the finished jobs of one worker out of its in-flight hash, by lease id.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] deaths hash of the queue
  ARGV    the lease ids of the finished runs

  Returns one 1 or 0 per lease, in order: 1 when the lease was held (the run is acknowledged and
  may record its outcome), 0 when it was not (the job was recovered meanwhile: the run is stale
  and must change nothing).
]]
local payloads = redis.call('HMGET', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[1], unpack(ARGV))
forget_deaths(KEYS[2], payloads)
local held = {}
for i, payload in ipairs(payloads) do
  held[i] = payload and 1 or 0
end
return held
