--[[ cancel_running: asks the workers to stop a running job: notes it in the queue's cancelled
  set (for a worker that misses the message, or runs the job again later) and publishes it on
  the queue's cancel channel, on the server's clock, in one step.

  KEYS[1] cancelled set of the queue (ZSET job id -> ms asked)
  ARGV[1] the job's id
  ARGV[2] the queue's cancel channel
  ARGV[3] how long a note is kept (ms)

  Returns the time of the request (ms, server clock).
]]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[2], now .. ' ' .. ARGV[1])
return now
