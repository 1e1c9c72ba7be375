--[[ retry: takes a job out of a worker's in-flight hash and schedules another attempt, due a
  delay from now on the Redis server's clock. Also used to put off a job this worker cannot run
  yet (an unknown task or a newer envelope during a rolling deploy), with the same payload.

  KEYS[1] in-flight hash of the worker for this queue (lease id -> payload)
  KEYS[2] retry ZSET of the queue (payload -> due time, ms)
  KEYS[3] deaths hash of the queue
  KEYS[4] counts hash of the queue for this minute (see `counts.lua`)
  ARGV[1] lease id of the run
  ARGV[2] payload of the next attempt
  ARGV[3] delay, ms
  ARGV[4] the second of the minute when the attempt failed (counted), or '' (a job put off)

  Returns the due time (server clock, ms), or -1 when the lease was not held (the job was
  recovered meanwhile: nothing is changed), or -2 when this lease was settled already (a repeated
  call after a lost reply: nothing is changed).
]]
local refused = refuse_unless_held(KEYS[1], KEYS[3], ARGV[1])
if refused then
  return refused
end
if ARGV[4] ~= '' then
  add_count(KEYS[4], 'failed', ARGV[4], 1)
end
local due = now_ms() + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], due, ARGV[2])
return due
