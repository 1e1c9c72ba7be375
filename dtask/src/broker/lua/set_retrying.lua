--[[ set_retrying: records that a job's attempt failed and another is scheduled, unless the job
  already has a final outcome (succeeded or dead): a final outcome is never replaced by a
  passing one, whatever order the writes arrive in.

  An outcome record is dtask's own JSON and always begins with its state (`{"state":"..."`);
  this is the one thing read of it.

  KEYS[1] the results hash of the job's span
  ARGV[1] the job's id
  ARGV[2] the record
  ARGV[3] how long it is kept, ms

  Returns 1 when written, 0 when a final outcome was kept.
]]
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, 19) ~= '{"state":"retrying"' then
  return 0
end
keep_outcomes(KEYS[1], { ARGV[1], ARGV[2] }, tonumber(ARGV[3]))
return 1
