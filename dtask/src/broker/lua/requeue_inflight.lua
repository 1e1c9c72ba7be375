--[[ requeue_inflight: returns every in-flight job of one worker to the front of its queue and
  forgets the worker. Used by the recoverer for a worker whose heartbeat lapsed, and by a worker
  itself at shutdown for the jobs it could not finish.

  A job recovered from a lapsed worker counts one more worker death: the envelope's leading
  `"d":N` field (added here when missing). A job that was in flight on as many dead workers as
  allowed is a poison job (it kills the process that runs it): it goes to the dead set instead.

  KEYS[1] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  KEYS[2] in-flight hash of the worker for this queue (field -> payload)
  KEYS[3] pending list of the queue
  KEYS[4] dead ZSET of the queue
  KEYS[5] landing list of the worker for this queue
  KEYS[6] suspects list of the queue
  ARGV[1] worker id
  ARGV[2] "lapsed": only when the worker's last heartbeat is at or before ARGV[3], counting a
          death for each job; "always": unconditionally (the worker itself is shutting down)
  ARGV[3] heartbeat cutoff, ms (used with "lapsed")
  ARGV[4] worker deaths after which a job is buried
  ARGV[5] now, ms
  ARGV[6] worker deaths from which a job is a suspect: it goes to the suspects list, where each
          runs with no other suspect beside it, so that the next death is charged to it alone

  Returns { jobs requeued, { ids of the jobs buried } }, or { -1, {} } when the worker turned
  out to be alive.
]]
local rcall = redis.call
local lapsed = ARGV[2] == 'lapsed'
if lapsed then
  local seen = rcall('ZSCORE', KEYS[1], ARGV[1])
  if seen and tonumber(seen) > tonumber(ARGV[3]) then
    return { -1, {} }
  end
end
local max_deaths = tonumber(ARGV[4])
local result = { 0, {} }
-- Jobs held in flight, then those a blocking wait landed; returned to the queue's front.
local held = rcall('HVALS', KEYS[2])
for _, payload in ipairs(rcall('LRANGE', KEYS[5], 0, -1)) do
  held[#held + 1] = payload
end
rcall('DEL', KEYS[2], KEYS[5])
for i = #held, 1, -1 do
  local payload = held[i]
  local deaths = nil
  if lapsed then
    local counted, rest = string.match(payload, '^{"d":(%d+),(.*)$')
    if counted then
      deaths = tonumber(counted) + 1
      payload = '{"d":' .. deaths .. ',' .. rest
    elseif string.sub(payload, 1, 5) == '{"v":' then
      deaths = 1
      payload = '{"d":1,' .. string.sub(payload, 2)
    end
  end
  if deaths and deaths >= max_deaths then
    local id = string.match(payload, '"id":"([^"]*)"') or ''
    local record = '{"id":' .. cjson.encode(id)
    local task = string.match(payload, '"t":"([^"]*)"')
    if task then
      record = record .. ',"task":' .. cjson.encode(task)
    end
    record = record .. ',"error":"worker died ' .. deaths ..
      ' times while running this job","attempts":' ..
      (tonumber(string.match(payload, '"n":(%d+)') or '0') + deaths) ..
      ',"died_at_ms":' .. ARGV[5] .. ',"job":' .. payload .. '}'
    rcall('ZADD', KEYS[4], ARGV[5], record)
    table.insert(result[2], id)
  elseif deaths and deaths >= tonumber(ARGV[6]) then
    rcall('RPUSH', KEYS[6], payload)
    result[1] = result[1] + 1
  else
    rcall('LPUSH', KEYS[3], payload)
    result[1] = result[1] + 1
  end
end
rcall('ZREM', KEYS[1], ARGV[1])
return result
