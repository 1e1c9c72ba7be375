--[[ bury: takes a job out of a worker's in-flight hash and records it in the dead set, which
  is then trimmed to its caps.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] dead ZSET of the queue (record -> time of death, ms)
  KEYS[3] deaths hash of the queue
  KEYS[4] counts hash of the queue for this minute (see `counts.lua`)
  KEYS[5] outbox of the queue (see `ack.lua`)
  ARGV[1] lease id of the run
  ARGV[2] dead record (the job and why it died)
  ARGV[3] maximum number of records the dead set keeps
  ARGV[4] maximum age of a record, ms
  ARGV[5] the second of the minute, for the counts
  ARGV[6] what the job's workflow does now that it died (an errand for the outbox), or ""
  ARGV[7] "inline": the job's dead outcome is stored here, in the same step (so that no repair
          that runs the job again, which can come only after this, is overwritten by it), and
          its waiters told; then KEYS[6] its results hash, KEYS[7] the watched set of the
          queue, ARGV[8] the job id, ARGV[9] its outcome record, ARGV[10] how long it is kept
          (ms), ARGV[11] the finished channel of the queue. "apart": the worker stores it
          after this answers (on a cluster, where results hashes live in other slots).

  Returns the time of death (server clock, ms), or -1 when the lease was not held (the job was
  recovered meanwhile: nothing is changed), or -2 when this lease was settled already (a repeated
  call after a lost reply: nothing is changed).
]]
local refused = refuse_unless_held(KEYS[1], KEYS[3], ARGV[1])
if refused then
  return refused
end
add_count(KEYS[4], 'failed', ARGV[5], 1)
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[5], ARGV[6])
end
local now = now_ms()
add_dead(KEYS[2], ARGV[2], now, ARGV[3], ARGV[4])
if ARGV[7] == 'inline' then
  keep_outcomes(KEYS[6], { ARGV[8], ARGV[9] }, tonumber(ARGV[10]))
  notify_waiters(KEYS[7], ARGV[11], { ARGV[8] }, { ARGV[9] })
end
return now
