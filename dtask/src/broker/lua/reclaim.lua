--[[ reclaim: returns to the front of the queue every job in one worker's in-flight hash whose
  lease the worker does not know it holds. Such a job got there by a fetch (or an adoption of
  landed jobs) whose reply was lost: Redis or the network failed between running the script and
  answering it. The worker is alive, so no recoverer would take it back, and it would never run.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] pending list of the queue
  ARGV    the lease ids the worker holds

  Returns the number of jobs returned to the queue.

  The settled markers (see `settle.lua`) of runs the worker no longer holds, left when its
  removal of them was lost, are removed here.
]]
local rcall = redis.call
local keep = {}
for _, lease in ipairs(ARGV) do
  keep[lease] = true
end
local reclaimed = 0
for _, field in ipairs(rcall('HKEYS', KEYS[1])) do
  local marker = string.sub(field, 1, 2) == 's:'
  local lease = marker and string.sub(field, 3) or field
  if not keep[lease] then
    -- A settled marker is a finished run whose removal was lost: only removed.
    if not marker then
      rcall('LPUSH', KEYS[2], rcall('HGET', KEYS[1], field))
      reclaimed = reclaimed + 1
    end
    rcall('HDEL', KEYS[1], field)
  end
end
return reclaimed
