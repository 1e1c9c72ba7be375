--[[ requeue_inflight: returns every in-flight job of one worker to the front of its queue and
  forgets the worker. Used by the recoverer for a worker whose heartbeat lapsed, and by a worker
  itself at shutdown for the jobs it could not finish.

  KEYS[1] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  KEYS[2] in-flight list of the worker for this queue
  KEYS[3] pending list of the queue
  ARGV[1] worker id
  ARGV[2] "lapsed": only when the worker's last heartbeat is at or before ARGV[3];
          "always": unconditionally (the worker itself is shutting down)
  ARGV[3] heartbeat cutoff, ms (used with "lapsed")

  Returns the number of jobs requeued, or -1 when the worker turned out to be alive.
]]
local rcall = redis.call
if ARGV[2] == 'lapsed' then
  local seen = rcall('ZSCORE', KEYS[1], ARGV[1])
  if seen and tonumber(seen) > tonumber(ARGV[3]) then
    return -1
  end
end
local moved = 0
while rcall('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do
  moved = moved + 1
end
rcall('ZREM', KEYS[1], ARGV[1])
return moved
