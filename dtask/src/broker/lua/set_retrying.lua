--[[ set_retrying: records that a job's attempt failed and another is scheduled, unless the job
  already has a final outcome (succeeded or dead): a final outcome is never replaced by a
  passing one, whatever order the writes arrive in.

  An outcome record is dtask's own JSON and always begins with its state (`{"state":"..."`);
  this is the one thing read of it.

  KEYS[1] the job's result key
  ARGV[1] the record
  ARGV[2] how long it is kept, ms

  Returns 1 when written, 0 when a final outcome was kept.
]]
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 19) ~= '{"state":"retrying"' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
