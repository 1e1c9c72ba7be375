--[[ settle (included at the top of the settling scripts): the pieces they share.

  A run is settled by replacing its entry in the in-flight hash with a settled marker, field
  `s:<lease>` (`settle_lease`); the worker deletes the marker once it has the answer. A marker
  is a run that finished: recovery, shutdown and reclaim skip it.

  A job that ends an attempt on a live worker forgets the worker deaths counted against it (see
  `requeue_inflight.lua`). The deaths hash exists only while some job of the queue has a death
  counted, so the usual cost is one EXISTS per script run.
]]
local function forget_deaths(deaths, payloads)
  if redis.call('EXISTS', deaths) == 0 then
    return
  end
  for _, payload in ipairs(payloads) do
    if payload then
      redis.call('HDEL', deaths, redis.sha1hex(payload))
    end
  end
end

-- The field that marks the run under `lease` as settled. Lease ids are decimal digits, so a
-- marker never collides with a lease, and payloads (any bytes, even empty) stay values.
local function settled_marker(lease)
  return 's:' .. lease
end

-- Settles the run under `lease` in `hash`: its entry is replaced by a settled marker, which
-- stays until the worker removes it, so that a call repeated after a lost reply knows it was
-- done (and a recovery meanwhile skips it: a settled run is nobody's to requeue). Returns
-- 'held' and the payload the first time, 'settled' when this lease was settled already,
-- 'lost' when it is not held (the job was recovered and belongs to another run).
local function settle_lease(hash, deaths, lease)
  local payload = redis.call('HGET', hash, lease)
  if not payload then
    if redis.call('HEXISTS', hash, settled_marker(lease)) == 1 then
      return 'settled'
    end
    return 'lost'
  end
  redis.call('HDEL', hash, lease)
  redis.call('HSET', hash, settled_marker(lease), '1')
  forget_deaths(deaths, { payload })
  return 'held', payload
end

-- `settle_lease` for a script that answers with a code: returns nil when the run may go on,
-- else the script's answer: -1 when the lease is not held, -2 when it was settled already.
local function refuse_unless_held(hash, deaths, lease)
  local state = settle_lease(hash, deaths, lease)
  if state == 'lost' then
    return -1
  elseif state == 'settled' then
    return -2
  end
  return nil
end

-- The Redis server's clock, ms.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Adds `record` to the dead set `dead` at `now`, then drops records older than `max_age` ms and
-- the oldest beyond `max_len`: every burial keeps the dead set within its caps.
local function add_dead(dead, record, now, max_len, max_age)
  redis.call('ZADD', dead, now, record)
  redis.call('ZREMRANGEBYSCORE', dead, '-inf', '(' .. (now - tonumber(max_age)))
  redis.call('ZREMRANGEBYRANK', dead, 0, -(tonumber(max_len) + 1))
end
