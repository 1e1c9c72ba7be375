--[[ spawn: enqueues the next step of a workflow once, however many times its errand is run
  (two workers' couriers may run the same errand, or one may run it again after a lost reply).

  KEYS[1] the spawn mark of the job (`{queue}:spawned:<id>`), kept a day
  KEYS[2] pending list of the job's queue
  ARGV[1] the job's payload
  ARGV[2] how long the mark is kept, ms

  Returns 1 when enqueued now, 0 when it was already.
]]
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
