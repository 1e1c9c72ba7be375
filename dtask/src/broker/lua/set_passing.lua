--[[ set_passing: records where jobs stand while they run or wait for a retry, best effort and
  in any order the writes arrive: a final outcome (succeeded, dead) is never replaced by a
  passing one, and a later attempt's record is never replaced by an earlier one's. (A job's
  first record, queued or scheduled, is written by its enqueue.)

  An outcome record is dtask's own JSON and always begins with its state (`{"state":"..."`),
  then the attempts it counts (`"attempts":N`); these are the two things read of it. A short
  record (`q`: queued, `s<ms>`: scheduled) is none of those states.

  KEYS[1] the results hash of the jobs' span
  ARGV[1] how long the records are kept, ms
  ARGV[2] what the records say:
          "run"   an attempt started or told its progress: not over a retrying record of this
                  attempt or a later one
          "retry" an attempt failed and the job waits for the next: not over a running record
                  of a later attempt
          "ready" a workflow step was enqueued (the record is a short one): only over the
                  step's waiting record (`w`)
          "back"  a running job went back to its queue (its worker died; the record is a
                  short one): only over a running record
  ARGV[3..] job id, record, attempts (of the record), ...

  Returns how many records were written.
]]
local mode = ARGV[2]
local fields = {}
for i = 3, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local write = true
  if current then
    local state = string.match(current, '^{"state":"(%a+)"')
    local attempts = tonumber(string.match(current, '"attempts":(%d+)') or '0')
    local mine = tonumber(ARGV[i + 2])
    if state == 'succeeded' or state == 'dead' then
      write = false
    elseif mode == 'run' then
      write = not (state == 'retrying' and attempts >= mine)
    elseif mode == 'retry' then
      write = not (state == 'running' and attempts > mine)
    elseif mode == 'back' then
      write = state == 'running'
    elseif mode == 'ready' then
      write = current == 'w'
    end
  elseif mode == 'back' or mode == 'ready' then
    write = false
  end
  if write then
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
end
if #fields > 0 then
  keep_outcomes(KEYS[1], fields, tonumber(ARGV[1]))
end
return #fields / 2
