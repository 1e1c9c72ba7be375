--[[ notify_finished: tells the waiters of jobs whose final outcome was stored apart from their
  settle (a death, a cancel, any outcome on a cluster), see notify.lua.

  KEYS[1] watched set of the queue
  ARGV[1] finished channel of the queue
  ARGV[2..] job id, record, job id, record, ...
]]
local ids, records = {}, {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  records[#records + 1] = ARGV[i + 1]
end
notify_waiters(KEYS[1], ARGV[1], ids, records)
return 1
