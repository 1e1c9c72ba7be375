--[[ schedule: adds delayed jobs to a queue's scheduled set, due a delay from now on the Redis
  server's clock (so that the clock of the machine enqueueing never matters).

  KEYS[1] scheduled ZSET of the queue (payload -> due time, ms)
  ARGV[1] delay, ms
  ARGV[2..] payloads

  Returns the due time, ms.
]]
local time = redis.call('TIME')
local due = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], due, ARGV[i])
end
return due
