--[[ tick: claims one tick of a periodic schedule for the whole fleet, on the server's clock,
  and enqueues its job: every worker that keeps the schedule calls this at the tick, and the
  first call wins. A tick is claimed once: a later call for it, or for an earlier tick, does
  nothing. The job payload is not read.

  KEYS[1] the queue's periodic ticks hash (schedule name -> last tick claimed, ms)
  KEYS[2] the queue's periodic definitions hash (schedule name -> JSON, for operators)
  KEYS[3] the queue's pending list
  KEYS[4] the queue's paused flag: while it is set, no tick is claimed (ticks fallen while a
          queue is paused are missed ticks, claimed as one when it resumes)
  ARGV[1] the schedule's name
  ARGV[2] the tick (ms since the epoch)
  ARGV[3] the schedule's definition (JSON), stored for operators
  ARGV[4] the job to enqueue, or '' to claim the tick without a job (a missed tick skipped)
  Returns 1: claimed and enqueued; 2: claimed, nothing enqueued; 0: claimed before;
          3: the queue is paused, nothing claimed;
          a negative number: the tick is that many ms in the future on the server's clock.
]]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tick = tonumber(ARGV[2])
if tick > now then
  return now - tick
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return 3
end
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if last >= tick then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[4])
  return 1
end
return 2
