--[[ find: looks for the entries of one of a queue's states that contain a given text (a job
  id, JSON-quoted), newest first, a bounded slice of the state per call, so that an operator
  opening one job never copies a whole queue over the network nor holds Redis for long: it
  reads the state in steps of 100 entries and stops after ARGV[3] entries or about 1 MB of
  them, whichever comes first (large jobs make short calls). Entries are compared as plain
  bytes, never parsed: the caller decodes the few matches and keeps the job whose id it is.

  KEYS[1] the pending list (newest at its tail) or a sorted set (newest: highest score)
  ARGV[1] the text to look for
  ARGV[2] how many entries from the newest end to skip
  ARGV[3] the most entries to read
  Returns {the position to read from next, or -1 once the state is read to its end,
           {entry, score, entry, score, ...}} (score 0 for a list entry).
]]
local needle = ARGV[1]
local skip = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local step = 100
local budget = 1048576
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'list' and kind ~= 'zset' then
  return {-1, {}}
end
local found = {}
local read = 0
local bytes = 0
while read < limit and bytes < budget do
  local from = skip + read
  local want = math.min(step, limit - read)
  local got = 0
  if kind == 'list' then
    local entries = redis.call('LRANGE', KEYS[1], -from - want, -from - 1)
    got = #entries
    for i = got, 1, -1 do
      local entry = entries[i]
      bytes = bytes + #entry
      if string.find(entry, needle, 1, true) then
        found[#found + 1] = entry
        found[#found + 1] = '0'
      end
    end
  else
    local entries = redis.call('ZRANGE', KEYS[1], from, from + want - 1, 'REV', 'WITHSCORES')
    got = #entries / 2
    for i = 1, #entries, 2 do
      local entry = entries[i]
      bytes = bytes + #entry
      if string.find(entry, needle, 1, true) then
        found[#found + 1] = entry
        found[#found + 1] = entries[i + 1]
      end
    end
  end
  read = read + got
  if got < want then
    return {-1, found}
  end
end
return {skip + read, found}
