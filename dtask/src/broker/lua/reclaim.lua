--[[ reclaim: returns to the front of the queue every job in one worker's in-flight hash whose
  lease the worker does not know it holds. Such a job got there by a fetch (or an adoption of
  landed jobs) whose reply was lost: Redis or the network failed between running the script and
  answering it. The worker is alive, so no recoverer would take it back, and it would never run.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] pending list of the queue
  ARGV    the lease ids the worker holds

  Returns the number of jobs returned to the queue.

  The worker's own settled runs are not in its list once settled; their emptied entries (see
  `settle.lua`), left when the worker's removal was lost, are removed here.
]]
local rcall = redis.call
local keep = {}
for _, lease in ipairs(ARGV) do
  keep[lease] = true
end
local reclaimed = 0
for _, lease in ipairs(rcall('HKEYS', KEYS[1])) do
  if not keep[lease] then
    local payload = rcall('HGET', KEYS[1], lease)
    rcall('HDEL', KEYS[1], lease)
    -- An emptied entry is a settled run whose removal was lost: only removed.
    if payload ~= '' then
      rcall('LPUSH', KEYS[2], payload)
      reclaimed = reclaimed + 1
    end
  end
end
return reclaimed
