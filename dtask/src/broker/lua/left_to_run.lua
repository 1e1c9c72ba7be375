--[[ left_to_run: for `dtask::testing`'s drain, how many jobs of some queues are still to run on
  one worker, read at one instant (a job moves between these keys only inside other scripts, so
  a snapshot never misses one in passage): ready, suspect, in flight on the worker or landing
  there, waiting for their task's limits, and errands of workflows not run yet (in the outbox
  or in the worker's hand). Reads only.

  KEYS, per queue, 7: pending list, suspects list, the worker's in-flight hash, its landing
        list, the outbox, the worker's errands in hand, the set of tasks with waiting sets
  ARGV, per queue, 1: what the queue's keys start with (`prefix:{queue}:`)

  Returns the count, over all the queues.
]]
local rcall = redis.call
local left = 0
for q = 0, #ARGV - 1 do
  local k = q * 7
  left = left + rcall('LLEN', KEYS[k + 1]) + rcall('LLEN', KEYS[k + 2])
    + rcall('HLEN', KEYS[k + 3]) + rcall('LLEN', KEYS[k + 4])
    + rcall('LLEN', KEYS[k + 5]) + rcall('LLEN', KEYS[k + 6])
  for _, task in ipairs(rcall('SMEMBERS', KEYS[k + 7])) do
    left = left + rcall('ZCARD', ARGV[q + 1] .. 'waiting:' .. task)
  end
end
return left
