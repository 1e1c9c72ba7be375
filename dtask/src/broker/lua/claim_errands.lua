--[[ claim_errands: takes errands from a queue's outbox into one worker's hand, so that two
  workers' couriers never run the same errand at once (and never scan the outbox for errands
  another took). Errands stay in the worker's hand until it ran them (`errands_done`); a
  worker that died with errands in hand has them returned to the outbox by whoever recovers
  its jobs (`requeue_inflight.lua`), and a worker whose round failed runs them again first.

  KEYS[1] outbox of the queue
  KEYS[2] the worker's errands in hand for the queue
  KEYS[3] worker registry of the queue (ZSET worker id -> last heartbeat, ms): the worker is
          (re)registered in the same step, as a fetch does, so that no errand is ever held by
          a worker that recovery cannot see
  ARGV[1] the most errands to take
  ARGV[2] the worker's id

  Returns the errands in hand: those left from a round that failed, else the newly taken.
]]
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then
  return held
end
local taken = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #taken == 0 then
  return taken
end
redis.call('LTRIM', KEYS[1], #taken, -1)
redis.call('RPUSH', KEYS[2], unpack(taken))
local time = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000), ARGV[2])
return taken
