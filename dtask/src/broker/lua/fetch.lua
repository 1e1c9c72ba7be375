--[[ fetch: moves up to N jobs from a queue's pending list to one worker's in-flight hash.

  A job is held in flight under its id (read from the envelope), so that acknowledging it is an
  O(1) HDEL however many jobs the worker holds. A payload without an id (not a dtask envelope)
  is held under `raw:<sha1>`; a field already taken (the same id twice) gets a `~n` suffix, so
  no payload ever overwrites another.

  When the worker has no suspect in flight, the first job may be a suspect (a job that was in
  flight on two dead workers, see `requeue_inflight.lua`): a worker runs at most one at a time.

  KEYS[1] pending list of the queue
  KEYS[2] in-flight hash of the worker for this queue (field -> payload)
  KEYS[3] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  KEYS[4] suspects list of the queue
  ARGV[1] maximum number of jobs to move
  ARGV[2] worker id (its heartbeat is refreshed: a fetching worker is alive)
  ARGV[3] "1" when the worker may take a suspect

  Returns { { field1, payload1, field2, payload2, ... }, 1 when the first job is a suspect else
  0 }, oldest first; the first array is empty when there is nothing to run.
]]
local rcall = redis.call
local max = tonumber(ARGV[1])
local jobs = {}
local suspect = 0
if ARGV[3] == '1' then
  local taken = rcall('LPOP', KEYS[4])
  if taken then
    jobs[1] = taken
    suspect = 1
  end
end
if #jobs < max then
  local popped = rcall('LPOP', KEYS[1], max - #jobs)
  if popped then
    for _, payload in ipairs(popped) do
      jobs[#jobs + 1] = payload
    end
  end
end
if #jobs == 0 then
  return { {}, 0 }
end
local fields = {}
for i, payload in ipairs(jobs) do
  fields[i] = string.match(payload, '"id":"([^"]+)"') or ('raw:' .. redis.sha1hex(payload))
end
local taken = rcall('HMGET', KEYS[2], unpack(fields))
local seen = {}
local pairs_to_set = {}
local reply = {}
for i, payload in ipairs(jobs) do
  local field = fields[i]
  local n = 0
  while taken[i] or seen[field] do
    n = n + 1
    field = fields[i] .. '~' .. n
    taken[i] = rcall('HEXISTS', KEYS[2], field) == 1
  end
  seen[field] = true
  pairs_to_set[#pairs_to_set + 1] = field
  pairs_to_set[#pairs_to_set + 1] = payload
  reply[#reply + 1] = field
  reply[#reply + 1] = payload
end
rcall('HSET', KEYS[2], unpack(pairs_to_set))
local time = rcall('TIME')
rcall('ZADD', KEYS[3], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[2])
return { reply, suspect }
