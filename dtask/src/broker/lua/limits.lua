--[[ limits (included in fetch and admit, after rate.lua): one task's own limits, holding
  across every worker. Kept in the task's limit hash (`<queue keys>limit:<task>`): a rate
  (the fields of rate.lua: `n` jobs per `per` ms, `burst`, and the bucket's `tokens`, `at`) and
  `max`, the most runs of the task at once. Each admitted run holds a slot in the task's slots
  set (`<queue keys>slots:<task>`, ZSET "<worker>|<lease>" -> ms taken) while it holds its
  lease: a slot is free again once its run no longer holds that lease in its worker's in-flight
  hash (settled, or its worker recovered after its lease lapsed). That is checked here, lazily,
  so that no settle and no recovery has to know about slots.

  limit_room(limit_key, slots_key, active_prefix) returns how many runs may start now and,
  when none may, how many ms until one may by the rate (0: when a run ends, unknown).
  limit_take(limit_key, slots_key, members) takes one slot per member ("<worker>|<lease>")
  and spends the tokens of the bucket just read.
]]
local function limit_room(limit_key, slots_key, active_prefix)
  local room = math.huge
  local max = tonumber(redis.call('HGET', limit_key, 'max'))
  if max and max > 0 then
    local held = redis.call('ZCARD', slots_key)
    if held >= max then
      for _, member in ipairs(redis.call('ZRANGE', slots_key, 0, -1)) do
        local worker, lease = string.match(member, '^(.*)|(%d+)$')
        if not worker or redis.call('HEXISTS', active_prefix .. worker, lease) == 0 then
          redis.call('ZREM', slots_key, member)
          held = held - 1
        end
      end
    end
    room = math.max(0, max - held)
    if room == 0 then
      return 0, 0
    end
  end
  local allowed, wait = rate_allowance(limit_key)
  if allowed then
    room = math.min(room, allowed)
    if room == 0 then
      return 0, wait
    end
  end
  return room, 0
end

local function limit_take(limit_key, slots_key, members)
  if #members == 0 then
    return
  end
  rate_spend(limit_key, #members)
  if redis.call('HEXISTS', limit_key, 'max') == 1 then
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    local entries = {}
    for i, member in ipairs(members) do
      entries[2 * i - 1] = now
      entries[2 * i] = member
    end
    redis.call('ZADD', slots_key, unpack(entries))
  end
end
