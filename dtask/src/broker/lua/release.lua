--[[ release (included at the top of retry and bury): takes one job out of a worker's in-flight
  state. A job fetched by `fetch` is in the in-flight hash under its field; one taken by a
  blocking wait is in the landing list. Returns 1 when the job was there, 0 when it was not (it
  was recovered meanwhile and belongs to someone else).
]]
local function release(hash, landing, field, payload)
  if field ~= '' then
    return redis.call('HDEL', hash, field)
  end
  return redis.call('LREM', landing, 1, payload)
end
