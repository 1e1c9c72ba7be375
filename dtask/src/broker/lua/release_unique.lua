--[[ release_unique: ends a job's hold on its uniqueness lock, if the job still holds it (a lock
  that lapsed and was taken by a newer job stays that job's): the lock goes, or, for a job
  named by its caller, stays until the job's outcome expires (the name stays the job's while
  its result can be read).

  KEYS[1] the lock's key
  ARGV[1] the job's id
  ARGV[2] how long the lock stays from now, ms ('0': it goes now)
  Returns 1 when released (or shortened), 0 when the job did not hold it.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
