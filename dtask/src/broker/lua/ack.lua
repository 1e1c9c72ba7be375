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
  then, "inline": the plan, four bytes per run: which results hash among KEYS[7..] its
                  outcome goes to (two bytes, high first: 1 = KEYS[7]; 0 = it stores
                  none), and how long its record is kept (two bytes: which of the TTLs
                  that follow, 1 = the first); then t, the number of TTLs, and the TTLs
                  (ms); then the job id and the record of each run that stores an outcome,
                  in the runs' order
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
-- The answer kept for repeats, as characters: `table.concat` of numbers would format each as
-- a float.
local marks = {}
local taken = {}
for i = 1, n do
  if payloads[i] then
    held[i] = 1
    marks[i] = '1'
    taken[#taken + 1] = ARGV[3 + i]
  else
    held[i] = 0
    marks[i] = '0'
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
  -- that held their lease only (a stale run neither writes nor keeps a hash longer). Numbers
  -- are read from bytes, not parsed: `tonumber` per run cost more than the writes.
  local plan = ARGV[outcomes_from]
  local t = tonumber(ARGV[outcomes_from + 1])
  local ttl_of = {}
  for k = 1, t do
    ttl_of[k] = tonumber(ARGV[outcomes_from + 1 + k])
  end
  local fields, ttls, ids, records = {}, {}, {}, {}
  local byte = string.byte
  local next_record = outcomes_from + t + 2
  for i = 1, n do
    local hash_high, hash_low, ttl_high, ttl_low = byte(plan, 4 * i - 3, 4 * i)
    local hash = hash_high * 256 + hash_low
    if hash > 0 then
      if held[i] == 1 then
        local id, record = ARGV[next_record], ARGV[next_record + 1]
        ids[#ids + 1] = id
        records[#records + 1] = record
        local list = fields[hash]
        if not list then
          list = {}
          fields[hash] = list
          ttls[hash] = 0
        end
        list[#list + 1] = id
        list[#list + 1] = record
        ttls[hash] = math.max(ttls[hash], ttl_of[ttl_high * 256 + ttl_low])
      end
      next_record = next_record + 2
    end
  end
  for hash = 1, #KEYS - 6 do
    if fields[hash] then
      keep_outcomes(KEYS[6 + hash], fields[hash], ttls[hash])
    end
  end
  notify_waiters(KEYS[5], ARGV[#ARGV - 1], ids, records)
end
add_count(KEYS[4], 'done', ARGV[#ARGV], #taken)
rcall('SET', KEYS[3], batch .. ':' .. table.concat(marks), 'PX', 86400000)
forget_deaths(KEYS[2], payloads)
return held
