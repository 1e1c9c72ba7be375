--[[ retry: takes a failed job out of a worker's in-flight state and schedules its next attempt.

  KEYS[1] in-flight hash of the worker for this queue
  KEYS[2] landing list of the worker for this queue
  KEYS[3] retry ZSET of the queue (payload -> due time, ms)
  ARGV[1] the job's field in the in-flight hash, or '' when it is in the landing list
  ARGV[2] payload as fetched
  ARGV[3] payload of the next attempt
  ARGV[4] due time of the next attempt, ms

  Returns 1 when the job was moved; 0 when it was no longer in flight on this worker
  (it was recovered meanwhile and belongs to someone else: nothing is changed).
]]
if release(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
