--[[ retry: takes a failed job out of a worker's in-flight list and schedules its next attempt.

  KEYS[1] in-flight list of the worker for this queue
  KEYS[2] retry ZSET of the queue (payload -> due time, ms)
  ARGV[1] payload as fetched (the exact in-flight entry)
  ARGV[2] payload of the next attempt
  ARGV[3] due time of the next attempt, ms

  Returns 1 when the job was moved; 0 when it was no longer in flight on this worker
  (it was recovered meanwhile and belongs to someone else: nothing is changed).
]]
local rcall = redis.call
if rcall('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
rcall('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
