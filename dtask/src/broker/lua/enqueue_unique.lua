--[[ enqueue_unique: queues a job unless another holds its uniqueness lock, in one step: the
  lock and the job arrive together, so a duplicate racing it either finds the lock or comes
  first. Expired locks (their job never released them: every worker gone) are swept a few
  at a time. The payload is not read.

  KEYS[1] the queue's unique locks hash (lock key -> id of the job holding it)
  KEYS[2] the queue's unique expiries sorted set (lock key, scored by when it lapses, ms)
  KEYS[3] the pending list
  KEYS[4] the scheduled set
  ARGV[1] the lock key
  ARGV[2] the job's id
  ARGV[3] how long the lock lasts at most, ms
  ARGV[4] the payload
  ARGV[5] '' to queue now, 'at:<ms>' for a time, 'after:<ms>' for a delay (server clock)
  Returns {1, job id} when queued, {0, id of the job holding the lock} for a duplicate.
]]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lapsed = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, 100)
for i = 1, #lapsed do
  redis.call('HDEL', KEYS[1], lapsed[i])
  redis.call('ZREM', KEYS[2], lapsed[i])
end
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder then
  return {0, holder}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local due = ARGV[5]
if due == '' then
  redis.call('RPUSH', KEYS[3], ARGV[4])
elseif string.sub(due, 1, 3) == 'at:' then
  redis.call('ZADD', KEYS[4], tonumber(string.sub(due, 4)), ARGV[4])
else
  redis.call('ZADD', KEYS[4], now + tonumber(string.sub(due, 7)), ARGV[4])
end
return {1, ARGV[2]}
