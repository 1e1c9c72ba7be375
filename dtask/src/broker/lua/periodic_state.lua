--[[ periodic_state: the server's clock and the last ticks claimed of some of a queue's periodic
  schedules, read on the queue's own node (on a cluster, another node's clock may differ).

  KEYS[1] the queue's periodic ticks hash
  ARGV    the schedules' names
  Returns {now (ms), {last tick or nil, ...}}.
]]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return {now, redis.call('HMGET', KEYS[1], unpack(ARGV))}
