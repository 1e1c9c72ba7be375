--[[ ack: settles a batch of finished runs of one worker, by lease id; a stale run (its job was
  taken back meanwhile) changes nothing.

  On a single server ("inline"), the outcome of each run that held its lease is stored here, in
  the same step: the fence covers the outcome too, and no crash can come between a settled run
  and its outcome. On a cluster ("apart"), results hashes live in other slots: the worker stores
  the outcomes after this answers.

  The answer is kept under the worker's answer key, tagged with the batch's id, so that any
  other call of the same batch (a repeat after a lost reply, or a first try that reached Redis
  late) gets the same answer and changes nothing.

  KEYS[1]   in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2]   deaths hash of the queue
  KEYS[3]   answer key of the worker for this queue
  KEYS[4]   counts hash of the queue for this minute (see `counts.lua`)
  KEYS[5]   watched set of the queue (see `notify.lua`)
  KEYS[6]   outbox of the queue: what the workflows of jobs that ended here do next
  KEYS[7..] "inline": the results hashes the outcomes go to, each once
  ARGV[1]   batch id, unique per batch of this worker
  ARGV[2]   "inline" or "apart"
  ARGV[3]   n, the number of runs
  ARGV[4 .. n+3]  their lease ids
  ARGV[n+4] m, the number of errands (what a workflow does next: see `workflow.rs`)
  then, m pairs: the position of the run the errand is of (1-based), the errand; each goes to
        the outbox when its run held its lease
  then, "inline": for each run with an outcome to store, five: its position among the runs
                  (1-based), the position of its results hash among KEYS, its job id, its
                  record, how long the record is kept (ms)
  last but one  the finished channel of the queue, where waiters of these jobs are told
  last      the second of the minute, for the counts

  Returns one 1 or 0 per run, in order: 1 when the lease is held by this run (acknowledged, by
  this call or an earlier one of the batch), 0 when it is not.
]]
local rcall = redis.call
local batch = ARGV[1]
local n = tonumber(ARGV[3])
local kept = rcall('GET', KEYS[3])
if kept and string.sub(kept, 1, #batch + 1) == batch .. ':' then
  local held = {}
  for i = 1, n do
    held[i] = (string.byte(kept, #batch + 1 + i) or 48) - 48
  end
  return held
end
local payloads = rcall('HMGET', KEYS[1], unpack(ARGV, 4, n + 3))
local held = {}
local taken = {}
for i = 1, n do
  if payloads[i] then
    held[i] = 1
    taken[#taken + 1] = ARGV[3 + i]
  else
    held[i] = 0
  end
end
if #taken > 0 then
  rcall('HDEL', KEYS[1], unpack(taken))
end
local m = tonumber(ARGV[n + 4])
local outcomes_from = n + 5 + 2 * m
for j = n + 5, outcomes_from - 1, 2 do
  if held[tonumber(ARGV[j])] == 1 then
    rcall('RPUSH', KEYS[6], ARGV[j + 1])
  end
end
if ARGV[2] == 'inline' then
  -- Per results hash: the fields to write and the longest time a record is kept, of the runs
  -- that held their lease only (a stale run neither writes nor keeps a hash longer).
  local fields = {}
  local ttls = {}
  local ids, records = {}, {}
  for j = outcomes_from, #ARGV - 2, 5 do
    if held[tonumber(ARGV[j])] == 1 then
      ids[#ids + 1] = ARGV[j + 2]
      records[#records + 1] = ARGV[j + 3]
      local key = tonumber(ARGV[j + 1])
      local list = fields[key]
      if not list then
        list = {}
        fields[key] = list
        ttls[key] = 0
      end
      list[#list + 1] = ARGV[j + 2]
      list[#list + 1] = ARGV[j + 3]
      ttls[key] = math.max(ttls[key], tonumber(ARGV[j + 4]))
    end
  end
  for key = 7, #KEYS do
    if fields[key] then
      keep_outcomes(KEYS[key], fields[key], ttls[key])
    end
  end
  notify_waiters(KEYS[5], ARGV[#ARGV - 1], ids, records)
end
add_count(KEYS[4], 'done', ARGV[#ARGV], #taken)
rcall('SET', KEYS[3], batch .. ':' .. table.concat(held), 'PX', 86400000)
forget_deaths(KEYS[2], payloads)
return held
