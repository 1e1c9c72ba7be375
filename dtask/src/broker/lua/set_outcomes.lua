--[[ set_outcomes: stores the outcome records of jobs created in one span of time, in one step.

  KEYS[1] the results hash of the span
  ARGV[1] how long the records are kept, ms
  ARGV[2..] job id, record, job id, record, ...
]]
keep_outcomes(KEYS[1], { unpack(ARGV, 2) }, tonumber(ARGV[1]))
return 1
