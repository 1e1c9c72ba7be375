--[[ enqueue_unique: queues a job unless another holds its uniqueness lock, in one step: the
  lock and the job arrive together, so a duplicate racing it either finds the lock or comes
  first. The lock is a key of its own that expires at the end of its window (a lock no worker
  released, every one gone, lapses by itself). The payload is not read.

  KEYS[1] the lock's key
  KEYS[2] the pending list
  KEYS[3] the scheduled set
  ARGV[1] the job's id
  ARGV[2] how long the lock lasts at most, ms
  ARGV[3] the payload
  ARGV[4] '' to queue now, 'at:<ms>' for a time, 'after:<ms>' for a delay (server clock)
  Returns {1, job id} when queued, {0, id of the job holding the lock} for a duplicate.
]]
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1])}
end
local due = ARGV[4]
if due == '' then
  redis.call('RPUSH', KEYS[2], ARGV[3])
elseif string.sub(due, 1, 3) == 'at:' then
  redis.call('ZADD', KEYS[3], tonumber(string.sub(due, 4)), ARGV[3])
else
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZADD', KEYS[3], now + tonumber(string.sub(due, 7)), ARGV[3])
end
return {1, ARGV[1]}
