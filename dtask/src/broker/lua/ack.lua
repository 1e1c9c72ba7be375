--[[ ack: settles the finished runs of one worker, by lease id; a stale run (its job was taken
  back meanwhile) changes nothing.

  On a single server ("inline"), the outcome of each run that held its lease is stored here, in
  the same step: the fence covers the outcome too, in one round trip. Repeating this after a
  lost reply finds the leases gone and changes nothing more (the outcomes are already stored).

  On a cluster ("mark"), result keys live in other slots and are stored by the worker after
  this answers; each settled entry is replaced by its settled marker, so that repeating this
  after a lost reply gives the same answer. The markers of the previous batch are removed here
  too: by then the worker has stored their outcomes.

  KEYS[1]   in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2]   deaths hash of the queue
  KEYS[3..] "inline": the result key of each outcome given, in order
  ARGV[1]   "inline" or "mark"
  ARGV[2]   n, the number of runs
  ARGV[3 .. n+2]  their lease ids
  then, "inline": for each run with an outcome to store, three: its position among the runs
                  (1-based), its record, how long the record is kept (ms)
        "mark":   the lease ids whose settled markers are to be removed

  Returns one 1 or 0 per run, in order: 1 when the lease is held by this run (acknowledged), 0
  when it is not.
]]
local inline = ARGV[1] == 'inline'
local n = tonumber(ARGV[2])
local payloads = redis.call('HMGET', KEYS[1], unpack(ARGV, 3, n + 2))
local taken = {}
local held = {}
for i = 1, n do
  if payloads[i] then
    held[i] = 1
    taken[#taken + 1] = ARGV[2 + i]
  elseif not inline and redis.call('HEXISTS', KEYS[1], settled_marker(ARGV[2 + i])) == 1 then
    held[i] = 1
  else
    held[i] = 0
  end
end
if #taken > 0 then
  redis.call('HDEL', KEYS[1], unpack(taken))
end
if inline then
  local key = 2
  for j = n + 3, #ARGV, 3 do
    key = key + 1
    if held[tonumber(ARGV[j])] == 1 then
      redis.call('SET', KEYS[key], ARGV[j + 1], 'PX', ARGV[j + 2])
    end
  end
else
  if #taken > 0 then
    local markers = {}
    for _, lease in ipairs(taken) do
      markers[#markers + 1] = settled_marker(lease)
      markers[#markers + 1] = '1'
    end
    redis.call('HSET', KEYS[1], unpack(markers))
  end
  if #ARGV > n + 2 then
    local forget = {}
    for i = n + 3, #ARGV do
      forget[#forget + 1] = settled_marker(ARGV[i])
    end
    redis.call('HDEL', KEYS[1], unpack(forget))
  end
end
forget_deaths(KEYS[2], payloads)
return held
