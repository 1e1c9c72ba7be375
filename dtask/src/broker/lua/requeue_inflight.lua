--[[ requeue_inflight: returns every in-flight job of one worker to its queue and forgets the
  worker. Used by the recoverer for a worker whose heartbeat lapsed, and by a worker itself at
  shutdown for the jobs it could not finish. Payloads are moved as opaque bytes, never read.

  A job recovered from a lapsed worker counts one more worker death, kept in the queue's deaths
  hash under the SHA-1 of its payload (the settling scripts forget it when a run ends). A job
  that was in flight on as many dead workers as allowed is a poison job (it kills the process
  that runs it): it goes to the poisoned list, where a recoverer builds its dead record and
  buries it (`bury_poisoned.lua`). A job one death short goes to the suspects list, where each
  runs with no other suspect beside it, so that the next death is charged to it alone.

  KEYS[1] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  KEYS[2] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[3] landing list of the worker for this queue
  KEYS[4] pending list of the queue
  KEYS[5] suspects list of the queue
  KEYS[6] deaths hash of the queue (SHA-1 of payload -> deaths)
  KEYS[7] poisoned list of the queue
  KEYS[8] the worker's workflow errands in hand for the queue (returned to KEYS[9])
  KEYS[9] outbox of the queue
  ARGV[1] worker id
  ARGV[2] "lapsed": only when the worker's last heartbeat is at or before ARGV[3], counting a
          death for each job; "always": unconditionally (the worker itself is shutting down)
  ARGV[3] heartbeat cutoff, ms (used with "lapsed")
  ARGV[4] worker deaths after which a job is poison
  ARGV[5] worker deaths from which a job is a suspect
  ARGV[6] how long the deaths hash is kept after its last change, ms

  Returns { jobs requeued, jobs set aside as poison, the payloads requeued... } (the worker
  tells their events and records where they stand), or { -1, 0 } when the worker turned out to
  be alive.
]]
local rcall = redis.call
local lapsed = ARGV[2] == 'lapsed'
if lapsed then
  local seen = rcall('ZSCORE', KEYS[1], ARGV[1])
  if seen and tonumber(seen) > tonumber(ARGV[3]) then
    return { -1, 0 }
  end
end
local max_deaths = tonumber(ARGV[4])
local suspect_from = tonumber(ARGV[5])
local requeued, poisoned = 0, 0
-- The answer, the payloads requeued from its third entry on (no unpack: it is bounded).
local answer = { 0, 0 }
-- Settled markers (`s:<lease>`) are runs that finished (see `settle.lua`): nothing to requeue.
local held = {}
local entries = rcall('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  if string.sub(entries[i], 1, 2) ~= 's:' then
    held[#held + 1] = entries[i + 1]
  end
end
for _, payload in ipairs(rcall('LRANGE', KEYS[3], 0, -1)) do
  held[#held + 1] = payload
end
rcall('DEL', KEYS[2], KEYS[3])
-- Errands the worker took and did not run go back to the outbox (running one twice is safe).
local errands = rcall('LRANGE', KEYS[8], 0, -1)
for _, errand in ipairs(errands) do
  rcall('RPUSH', KEYS[9], errand)
end
rcall('DEL', KEYS[8])
for i = #held, 1, -1 do
  local payload = held[i]
  local deaths = 0
  if lapsed then
    local key = redis.sha1hex(payload)
    deaths = rcall('HINCRBY', KEYS[6], key, 1)
    if deaths >= max_deaths then
      rcall('HDEL', KEYS[6], key)
    end
  end
  if deaths >= max_deaths then
    rcall('RPUSH', KEYS[7], payload)
    poisoned = poisoned + 1
  elseif deaths >= suspect_from then
    rcall('RPUSH', KEYS[5], payload)
    requeued = requeued + 1
    answer[#answer + 1] = payload
  else
    rcall('LPUSH', KEYS[4], payload)
    requeued = requeued + 1
    answer[#answer + 1] = payload
  end
end
if lapsed and #held > 0 and rcall('EXISTS', KEYS[6]) == 1 then
  rcall('PEXPIRE', KEYS[6], ARGV[6])
end
rcall('ZREM', KEYS[1], ARGV[1])
answer[1], answer[2] = requeued, poisoned
return answer
