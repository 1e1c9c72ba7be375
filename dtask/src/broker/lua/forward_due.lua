--[[ forward_due: moves scheduled and retry jobs whose time has come (on the Redis server's
  clock) to the end of the pending list. Safe to run from many workers at once: each due job is
  moved exactly once.

  KEYS[1] scheduled ZSET of the queue (payload -> due time, ms)
  KEYS[2] retry ZSET of the queue (payload -> due time, ms)
  KEYS[3] pending list of the queue
  ARGV[1] maximum number of jobs to move from each ZSET
  ARGV[2] (optional) ms to count ahead of the server's clock: jobs due within them move too
          (`dtask::testing` makes every job due at once)

  Returns { jobs moved, ms until the earliest job left in either ZSET is due, or -1 }.
]]
local rcall = redis.call
local time = rcall('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  + (tonumber(ARGV[2]) or 0)
local moved = 0
local next_due = -1
for i = 1, 2 do
  local due = rcall('ZRANGE', KEYS[i], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
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
if next_due >= 0 then
  next_due = math.max(next_due - now, 0)
end
return { moved, next_due }
