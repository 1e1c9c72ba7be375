--[[ bury: takes a job out of a worker's in-flight state and records it in the dead set.

  KEYS[1] in-flight hash of the worker for this queue
  KEYS[2] landing list of the worker for this queue
  KEYS[3] dead ZSET of the queue (record -> time of death, ms)
  ARGV[1] the job's field in the in-flight hash, or '' when it is in the landing list
  ARGV[2] payload as fetched
  ARGV[3] dead record (the job and why it died)
  ARGV[4] now, ms
  ARGV[5] maximum number of records the dead set keeps
  ARGV[6] records that died before this time, ms, are dropped

  Returns 1 when the job was buried; 0 when it was no longer in flight on this worker
  (it was recovered meanwhile and belongs to someone else: nothing is changed).
]]
local rcall = redis.call
if release(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
rcall('ZADD', KEYS[3], ARGV[4], ARGV[3])
rcall('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
rcall('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[5]) + 1))
return 1
