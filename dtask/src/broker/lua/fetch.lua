--[[ fetch: moves up to N jobs from a queue's pending list to one worker's in-flight hash.

  A job is held in flight under its id (read from the envelope), so that acknowledging it is an
  O(1) HDEL however many jobs the worker holds. A payload without an id (not a dtask envelope)
  is held under `raw:<sha1>`; a field already taken (the same id twice) gets a `~n` suffix, so
  no payload ever overwrites another.

  KEYS[1] pending list of the queue
  KEYS[2] in-flight hash of the worker for this queue (field -> payload)
  KEYS[3] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  ARGV[1] maximum number of jobs to move
  ARGV[2] worker id (its heartbeat is refreshed: a fetching worker is alive)

  Returns { field1, payload1, field2, payload2, ... }, oldest first; empty when the queue is.
]]
local rcall = redis.call
local jobs = rcall('LPOP', KEYS[1], tonumber(ARGV[1]))
if not jobs then
  return {}
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
return reply
