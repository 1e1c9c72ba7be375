--[[ ack: settles a batch of finished runs of one worker, by lease id; a stale run (its job was
  taken back meanwhile) changes nothing.

  The worker stores the outcomes of the runs this answers held, once it has the answer: result
  keys live in slots of their own on a cluster, and a SET sent beside the script costs Redis
  less than one made from inside it. So that a batch repeated after a lost reply gets the same
  answer (its leases are gone by then, yet its outcomes are still to store), the answer is kept
  under the worker's answer key, tagged with the batch's id, until the next batch.

  KEYS[1]   in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2]   deaths hash of the queue
  KEYS[3]   answer key of the worker for this queue
  ARGV[1]   batch id, unique per batch of this worker (the same on a repeat)
  ARGV[2]   "1" when this call repeats one whose reply was lost, else "0"
  ARGV[3 ..]  the lease ids of the runs

  Returns one 1 or 0 per run, in order: 1 when the lease is held by this run (acknowledged, now
  or by an earlier call of this batch whose reply was lost), 0 when it is not.
]]
local rcall = redis.call
local batch = ARGV[1]
local n = #ARGV - 2
if ARGV[2] == '1' then
  local kept = rcall('GET', KEYS[3])
  if kept and string.sub(kept, 1, #batch + 1) == batch .. ':' then
    local held = {}
    for i = 1, n do
      held[i] = string.byte(kept, #batch + 1 + i) - 48
    end
    return held
  end
end
local payloads = rcall('HMGET', KEYS[1], unpack(ARGV, 3))
local held = {}
local flags = {}
local taken = {}
for i = 1, n do
  if payloads[i] then
    held[i] = 1
    flags[i] = '1'
    taken[#taken + 1] = ARGV[2 + i]
  else
    held[i] = 0
    flags[i] = '0'
  end
end
if #taken > 0 then
  rcall('HDEL', KEYS[1], unpack(taken))
end
rcall('SET', KEYS[3], batch .. ':' .. table.concat(flags), 'PX', 600000)
forget_deaths(KEYS[2], payloads)
return held
