--[[ revive: moves dead jobs back to the end of their queue, each with a fresh attempt budget
  (the worker-side caller built the fresh payload: scripts never parse payloads).

  Only a record still in the dead set is revived (its ZREM answers 1), so two revivals racing,
  or a revival racing a deletion, revive a job at most once.

  On a single server ("inline"), the job's dead outcome is removed in the same step, so that
  `status()` no longer says dead while the job waits to run again (and a later retrying outcome
  is not refused as if the job were final).

  A unique job takes its lock back in the same step; when another job holds the lock now (a
  new job of the same name, or with the same arguments), it stays dead.

  KEYS[1]   dead ZSET of the queue
  KEYS[2]   pending list of the queue
  KEYS[3..] the results hashes of the jobs' outcomes ("inline"), and the unique jobs' locks,
            each once
  ARGV[1]   "inline" or "apart"
  then, for each job, six: its dead record, its fresh payload, its id, (inline) the position
  of its results hash among KEYS (0 for none), the position of its lock among KEYS (0 for
  none), and how long its lock lasts (ms)

  Returns one number per job, in order: 1 when revived by this call, 2 when left dead because
  another job holds its lock, 0 when it was no longer in the dead set.
]]
local revived = {}
for i = 2, #ARGV, 6 do
  local lock = tonumber(ARGV[i + 4])
  local held_by_other = false
  if lock > 0 and redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    local holder = redis.call('GET', KEYS[lock])
    held_by_other = holder and holder ~= ARGV[i + 2]
  end
  if held_by_other then
    revived[#revived + 1] = 2
  elseif redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    if lock > 0 then
      redis.call('SET', KEYS[lock], ARGV[i + 2], 'PX', ARGV[i + 5])
    end
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    local hash = tonumber(ARGV[i + 3])
    if ARGV[1] == 'inline' and hash > 0 then
      redis.call('HDEL', KEYS[hash], ARGV[i + 2])
    end
    revived[#revived + 1] = 1
  else
    revived[#revived + 1] = 0
  end
end
return revived
