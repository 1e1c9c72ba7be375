--[[ forward_due: moves scheduled and retry jobs whose time has come to the end of the pending list.
  Safe to run from many workers at once: each due job is moved exactly once.

  KEYS[1] scheduled ZSET of the queue (payload -> due time, ms)
  KEYS[2] retry ZSET of the queue (payload -> due time, ms)
  KEYS[3] pending list of the queue
  ARGV[1] now, ms
  ARGV[2] maximum number of jobs to move from each ZSET

  Returns { jobs moved, due time of the earliest job left in either ZSET in ms, or -1 }.
]]
local rcall = redis.call
local moved = 0
local next_due = -1
for i = 1, 2 do
  local due = rcall('ZRANGE', KEYS[i], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
  if #due > 0 then
    rcall('RPUSH', KEYS[3], unpack(due))
    rcall('ZREM', KEYS[i], unpack(due))
    moved = moved + #due
  end
  local first = rcall('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local score = tonumber(first[2])
    if next_due < 0 or score < next_due then
      next_due = score
    end
  end
end
return { moved, next_due }
