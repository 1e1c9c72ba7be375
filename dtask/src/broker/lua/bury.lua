--[[ bury: takes a job out of a worker's in-flight list and records it in the dead set.

  KEYS[1] in-flight list of the worker for this queue
  KEYS[2] dead ZSET of the queue (record -> time of death, ms)
  ARGV[1] payload as fetched (the exact in-flight entry)
  ARGV[2] dead record (the job and why it died)
  ARGV[3] now, ms
  ARGV[4] maximum number of records the dead set keeps
  ARGV[5] records that died before this time, ms, are dropped

  Returns 1 when the job was buried; 0 when it was no longer in flight on this worker
  (it was recovered meanwhile and belongs to someone else: nothing is changed).
]]
local rcall = redis.call
if rcall('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
rcall('ZADD', KEYS[2], ARGV[3], ARGV[2])
rcall('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
rcall('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[4]) + 1))
return 1
