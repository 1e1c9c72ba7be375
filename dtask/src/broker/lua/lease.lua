--[[ lease (included at the top of fetch and adopt): puts payloads into a worker's in-flight
  hash, each under a fresh lease id drawn from the queue's lease counter, and returns
  { lease1, payload1, lease2, payload2, ... }.
]]
local function lease_all(hash, counter, payloads)
  local last = redis.call('INCRBY', counter, #payloads)
  local first = last - #payloads
  local fields = {}
  local reply = {}
  for i, payload in ipairs(payloads) do
    local lease = tostring(first + i)
    fields[#fields + 1] = lease
    fields[#fields + 1] = payload
    reply[#reply + 1] = lease
    reply[#reply + 1] = payload
  end
  redis.call('HSET', hash, unpack(fields))
  return reply
end
