--[[ revive: moves dead jobs back to the end of their queue, each with a fresh attempt budget
  (the worker-side caller built the fresh payload: scripts never parse payloads).

  Only a record still in the dead set is revived (its ZREM answers 1), so two revivals racing,
  or a revival racing a deletion, revive a job at most once.

  On a single server ("inline"), the job's dead outcome is removed in the same step, so that
  `status()` no longer says dead while the job waits to run again (and a later retrying outcome
  is not refused as if the job were final).

  KEYS[1]   dead ZSET of the queue
  KEYS[2]   pending list of the queue
  KEYS[3..] "inline": the results hashes of the jobs' outcomes, each once
  ARGV[1]   "inline" or "apart"
  then, for each job, four: its dead record, its fresh payload, its id, and (inline) the
  position of its results hash among KEYS (0 for none)

  Returns one 1 or 0 per job, in order: 1 when revived by this call.
]]
local revived = {}
for i = 2, #ARGV, 4 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
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
