--[[ cancel: takes one waiting job out of its queue (pending list, scheduled set or retry set)
  before a worker takes it; a fetch or a forward racing it takes it first or not at all.

  KEYS[1] the list or sorted set holding the job
  KEYS[2] outbox of the queue (see `ack.lua`)
  ARGV[1] the job's payload, exactly as stored
  ARGV[2] what the job's workflow does now that it was cancelled (an errand), or ""

  Returns 1 when this call removed it (every copy, should the same payload be queued twice),
  0 when it was no longer there.
]]
local removed
if redis.call('TYPE', KEYS[1])['ok'] == 'list' then
  removed = math.min(redis.call('LREM', KEYS[1], 0, ARGV[1]), 1)
else
  removed = redis.call('ZREM', KEYS[1], ARGV[1])
end
if removed == 1 and ARGV[2] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
return removed
