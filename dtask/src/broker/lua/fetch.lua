--[[ fetch: moves up to N jobs from a queue's pending list to one worker's in-flight list.

  KEYS[1] pending list of the queue
  KEYS[2] in-flight list of the worker for this queue
  KEYS[3] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  ARGV[1] maximum number of jobs to move
  ARGV[2] worker id (its heartbeat is refreshed: a fetching worker is alive)

  Returns the moved payloads, oldest first; an empty array when the queue is empty.
]]
local rcall = redis.call
local jobs = rcall('LPOP', KEYS[1], tonumber(ARGV[1]))
if not jobs then
  return {}
end
rcall('RPUSH', KEYS[2], unpack(jobs))
local time = rcall('TIME')
rcall('ZADD', KEYS[3], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[2])
return jobs
