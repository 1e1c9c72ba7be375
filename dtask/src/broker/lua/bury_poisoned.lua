--[[ bury_poisoned: moves one job from the queue's poisoned list (jobs whose workers died too
  often, set aside by `requeue_inflight.lua`) to the dead set, as the record built for it.

  KEYS[1] poisoned list of the queue
  KEYS[2] dead ZSET of the queue
  KEYS[3] outbox of the queue (see `ack.lua`)
  ARGV[1] payload, as in the poisoned list
  ARGV[2] dead record
  ARGV[3] maximum number of records the dead set keeps
  ARGV[4] maximum age of a record, ms
  ARGV[5] what the job's workflow does now that it died (an errand for the outbox), or ""

  Returns the time of death (server clock, ms), or -1 when the job was no longer in the list
  (another recoverer buried it).
]]
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return -1
end
if ARGV[5] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
end
local now = now_ms()
add_dead(KEYS[2], ARGV[2], now, ARGV[3], ARGV[4])
return now
