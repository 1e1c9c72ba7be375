--[[ lapsed: the workers of a queue whose heartbeat lapsed, by the clock of the queue's own
  Redis node (on a cluster, each node's clock judges the heartbeats it recorded).

  KEYS[1] worker registry of the queue (ZSET worker id -> last heartbeat, ms)
  ARGV[1] lease, ms: a worker whose last heartbeat is older than this has lapsed

  Returns { cutoff ms, { worker ids whose heartbeat is at or before the cutoff } }.
]]
local rcall = redis.call
local time = rcall('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local lapsed = rcall('ZRANGE', KEYS[1], '-inf', cutoff, 'BYSCORE')
return { cutoff, lapsed }
