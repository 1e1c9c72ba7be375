--[[ cancel: takes one waiting job out of its queue (pending list, scheduled set or retry set)
  before a worker takes it; a fetch or a forward racing it takes it first or not at all.

  KEYS[1] the list or sorted set holding the job
  ARGV[1] the job's payload, exactly as stored

  Returns 1 when this call removed it (every copy, should the same payload be queued twice),
  0 when it was no longer there.
]]
if redis.call('TYPE', KEYS[1])['ok'] == 'list' then
  return math.min(redis.call('LREM', KEYS[1], 0, ARGV[1]), 1)
end
return redis.call('ZREM', KEYS[1], ARGV[1])
