--[[ release_unique: ends a job's hold on its uniqueness lock, if the job still holds it (a lock
  that lapsed and was taken by a newer job stays that job's): the lock goes, or, for a job
  named by its caller, stays until the job's outcome expires (the name stays the job's while
  its result can be read).

  KEYS[1] the queue's unique locks hash
  KEYS[2] the queue's unique expiries sorted set
  ARGV[1] the lock key
  ARGV[2] the job's id
  ARGV[3] how long the lock stays from now, ms ('0': it goes now)
  Returns 1 when released (or shortened), 0 when the job did not hold it.
]]
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local keep = tonumber(ARGV[3])
if keep > 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + keep, ARGV[1])
  return 1
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
