--[[ ack: settles the finished runs of one worker, by lease id: each entry is emptied (the
  worker deletes it with the outcome writes that follow), so that repeating this after a lost
  reply gives the same answer.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] deaths hash of the queue
  ARGV    the lease ids of the finished runs

  Returns one 1 or 0 per lease, in order: 1 when the lease is held by this run (the run is
  acknowledged and may record its outcome), 0 when it is not (the job was recovered meanwhile:
  the run is stale and must change nothing).
]]
local payloads = redis.call('HMGET', KEYS[1], unpack(ARGV))
local emptied = {}
local held = {}
for i, payload in ipairs(payloads) do
  held[i] = payload and 1 or 0
  if payload and payload ~= '' then
    emptied[#emptied + 1] = ARGV[i]
    emptied[#emptied + 1] = ''
  end
end
if #emptied > 0 then
  redis.call('HSET', KEYS[1], unpack(emptied))
end
forget_deaths(KEYS[2], payloads)
return held
