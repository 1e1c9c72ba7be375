--[[ time: the clock of the Redis node that holds a queue (on a cluster, each node has its own),
  read there, so that a delay counts on the clock of the node whose scheduled set it goes to.

  KEYS[1] any key of the queue (only routes the call to its node; not read)

  Returns the node's time, ms since the epoch.
]]
local time = redis.call('TIME')
return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
