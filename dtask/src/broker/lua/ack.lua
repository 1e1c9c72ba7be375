--[[ ack: settles the finished runs of one worker, by lease id: each entry is replaced by its
  settled marker (the worker deletes the markers with the outcome writes that follow), so that
  repeating this after a lost reply gives the same answer.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] deaths hash of the queue
  ARGV    the lease ids of the finished runs

  Returns one 1 or 0 per lease, in order: 1 when the lease is held by this run (the run is
  acknowledged and may record its outcome), 0 when it is not (the job was recovered meanwhile:
  the run is stale and must change nothing).
]]
local payloads = redis.call('HMGET', KEYS[1], unpack(ARGV))
local taken = {}
local markers = {}
local held = {}
for i, payload in ipairs(payloads) do
  if payload then
    held[i] = 1
    taken[#taken + 1] = ARGV[i]
    markers[#markers + 1] = settled_marker(ARGV[i])
    markers[#markers + 1] = '1'
  elseif redis.call('HEXISTS', KEYS[1], settled_marker(ARGV[i])) == 1 then
    held[i] = 1
  else
    held[i] = 0
  end
end
if #taken > 0 then
  redis.call('HDEL', KEYS[1], unpack(taken))
  redis.call('HSET', KEYS[1], unpack(markers))
end
forget_deaths(KEYS[2], payloads)
return held
