--[[ spawn: enqueues next steps of workflows into one queue, each once, however many times its
  errand is run (two workers' couriers may run the same errand, or one may run it again after
  a lost reply).

  KEYS[1]   pending list of the queue
  KEYS[2..] the spawn mark of each job (`{queue}:spawned:<id>`), kept a day
  ARGV[1]   how long a mark is kept, ms
  ARGV[2..] each job's payload, in the order of the marks

  Returns, per job, 1 when enqueued now, 0 when it was already.
]]
local spawned = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[1]) then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    spawned[#spawned + 1] = 1
  else
    spawned[#spawned + 1] = 0
  end
end
return spawned
