--[[ find: looks for the entries of one of a queue's states that contain a given text (a job
  id, JSON-quoted), reading at most a chunk of the state per call, newest first, so that an
  operator opening one job never copies a whole queue over the network nor blocks Redis for
  long. Entries are compared as plain bytes, never parsed: the caller decodes the few matches
  and keeps the job whose id it is.

  KEYS[1] the pending list (newest at its tail) or a sorted set (newest: highest score)
  ARGV[1] the text to look for
  ARGV[2] how many entries from the newest end to skip
  ARGV[3] how many entries to read
  Returns {the position to read from next, or -1 once the state is read to its end,
           {entry, score, entry, score, ...}} (score 0 for a list entry).
]]
local needle = ARGV[1]
local skip = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local kind = redis.call('TYPE', KEYS[1])['ok']
local found = {}
local read = 0
if kind == 'list' then
  local entries = redis.call('LRANGE', KEYS[1], -skip - count, -skip - 1)
  read = #entries
  for i = 1, #entries do
    if string.find(entries[i], needle, 1, true) then
      found[#found + 1] = entries[i]
      found[#found + 1] = '0'
    end
  end
elseif kind == 'zset' then
  local entries = redis.call('ZRANGE', KEYS[1], skip, skip + count - 1, 'REV', 'WITHSCORES')
  read = #entries / 2
  for i = 1, #entries, 2 do
    if string.find(entries[i], needle, 1, true) then
      found[#found + 1] = entries[i]
      found[#found + 1] = entries[i + 1]
    end
  end
end
local next = -1
if read == count then
  next = skip + count
end
return {next, found}
