--[[ heartbeat: records that a worker serving a queue is alive, at the Redis server's clock
  (so that the clocks of the machines running workers never matter for recovery).

  KEYS[1] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  ARGV[1] worker id

  Returns the server time used, ms.
]]
local rcall = redis.call
local time = rcall('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
rcall('ZADD', KEYS[1], now, ARGV[1])
return now
