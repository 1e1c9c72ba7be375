--[[ purge: empties one of a queue's waiting states (its pending list, scheduled set or retry
  set) in one step; a fetch racing it takes a job before or not at all.

  KEYS[1] the list or sorted set
  Returns how many jobs it held.
]]
local kind = redis.call('TYPE', KEYS[1])['ok']
local count = 0
if kind == 'list' then
  count = redis.call('LLEN', KEYS[1])
elseif kind == 'zset' then
  count = redis.call('ZCARD', KEYS[1])
end
redis.call('DEL', KEYS[1])
return count
