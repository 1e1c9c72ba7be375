--[[ limits (included in fetch and admit, after rate.lua): one task's own limits, holding
  across every worker. Kept in the task's limit hash (`<queue keys>limit:<task>`): a rate
  (the fields of rate.lua: `n` jobs per `per` ms, `burst`, and the bucket's `tokens`, `at`) and
  `max`, the most runs of the task at once. Each admitted run holds a slot in the task's slots
  set (`<queue keys>slots:<task>`, ZSET "<worker>|<lease>" scored by lease, oldest first) while
  it holds its lease: a slot is free again once its run no longer holds that lease in its
  worker's in-flight hash (settled, or its worker recovered after its lease lapsed). That is
  checked here, lazily, when the set looks full (oldest runs first, at most SLOT_SCAN of them
  per call), so that no settle and no recovery has to know about slots.

  limit_room(limit_key, slots_key, active_prefix, max, has_rate) returns how many runs may
  start now and, when none may, how many ms until one may by the rate (0: when a run ends).
  limit_take(limit_key, slots_key, members, max, has_rate) takes one slot per member
  ("<worker>|<lease>") and spends the tokens of the bucket just read.
]]
local SLOT_SCAN = 1000

local function limit_room(limit_key, slots_key, active_prefix, max, has_rate)
  local room = math.huge
  if max and max > 0 then
    local held = redis.call('ZCARD', slots_key)
    if held >= max then
      for _, member in ipairs(redis.call('ZRANGE', slots_key, 0, SLOT_SCAN - 1)) do
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
  if has_rate then
    local allowed, wait = rate_allowance(limit_key)
    if allowed then
      room = math.min(room, allowed)
      if room == 0 then
        return 0, wait
      end
    end
  end
  return room, 0
end

local function limit_take(limit_key, slots_key, members, max, has_rate)
  if #members == 0 then
    return
  end
  if has_rate then
    rate_spend(limit_key, #members)
  end
  if max and max > 0 then
    local entries = {}
    for i, member in ipairs(members) do
      entries[2 * i - 1] = tonumber(string.match(member, '|(%d+)$')) or 0
      entries[2 * i] = member
    end
    redis.call('ZADD', slots_key, unpack(entries))
  end
end
