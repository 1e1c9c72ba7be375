--[[ reclaim: returns to the front of the queue every job in one worker's in-flight state that
  the worker does not know it holds. Such a job got there by a fetch whose reply was lost (Redis
  or the network failed between running the fetch and answering it): the worker is alive, so no
  recoverer would take it back, and the worker would never run it.

  KEYS[1] in-flight hash of the worker for this queue (field -> payload)
  KEYS[2] landing list of the worker for this queue
  KEYS[3] pending list of the queue
  ARGV[1] "hash": ARGV[2..] are the fields the worker holds;
          "landing": ARGV[2..] are the landed payloads the worker holds (repeats count)

  Returns the number of jobs returned to the queue.
]]
local rcall = redis.call
local keep = {}
for i = 2, #ARGV do
  keep[ARGV[i]] = (keep[ARGV[i]] or 0) + 1
end
local reclaimed = 0
if ARGV[1] == 'hash' then
  local entries = rcall('HGETALL', KEYS[1])
  for i = 1, #entries, 2 do
    if not keep[entries[i]] then
      rcall('HDEL', KEYS[1], entries[i])
      rcall('LPUSH', KEYS[3], entries[i + 1])
      reclaimed = reclaimed + 1
    end
  end
else
  for _, payload in ipairs(rcall('LRANGE', KEYS[2], 0, -1)) do
    if (keep[payload] or 0) > 0 then
      keep[payload] = keep[payload] - 1
    else
      rcall('LREM', KEYS[2], 1, payload)
      rcall('LPUSH', KEYS[3], payload)
      reclaimed = reclaimed + 1
    end
  end
end
return reclaimed
