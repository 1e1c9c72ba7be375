--[[ rate (included in fetch and adopt): a queue's rate limit, a token bucket kept in the
  queue's rate hash and refilled on the server's clock, so that every worker draws from the
  same budget. Fields: `n` jobs per `per` ms, at most `burst` at once; `tokens` and `at` (ms)
  are the bucket's state.

  A task's limit (`limits.lua`) keeps the same fields in its own hash.

  rate_allowance(key) returns how many jobs may start now (nil: the hash holds no limit) and,
  when none may, how many ms until one may; rate_spend(key, taken) takes `taken` tokens from
  the bucket just read under `key`.
]]
local rate_states = {}
local function rate_allowance(key)
  local fields = redis.call('HMGET', key, 'n', 'per', 'burst', 'tokens', 'at')
  local n, per, burst = tonumber(fields[1]), tonumber(fields[2]), tonumber(fields[3])
  if not n or not per or not burst or n <= 0 or per <= 0 then
    return nil, 0
  end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local tokens = tonumber(fields[4]) or burst
  local at = math.min(tonumber(fields[5]) or now, now)
  if now > at then
    -- Right after a spend the bucket holds up to just under burst + 1, so that the fraction
    -- of a token a fetch arriving a little late would lose is kept (the rate holds however
    -- late workers come); after a quiet spell of two token intervals, at most `burst`: never
    -- more than `burst` start at once.
    local cap = burst
    if (now - at) * n <= 2 * per then
      cap = burst + 0.999
    end
    tokens = math.min(cap, tokens + (now - at) * n / per)
  end
  rate_states[key] = { tokens = tokens, now = now }
  local allowed = math.floor(tokens)
  if allowed >= 1 then
    return allowed, 0
  end
  return 0, math.min(1000, math.max(1, math.ceil((1 - tokens) * per / n)))
end

local function rate_spend(key, taken)
  local state = rate_states[key]
  if state then
    redis.call('HSET', key, 'tokens', tostring(state.tokens - taken), 'at', state.now)
  end
end
