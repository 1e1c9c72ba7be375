--[[ counts (included in the scripts that end attempts): how many jobs of a queue succeeded and
  failed, per minute and per second, for dashboards and `dtask stats`.

  A queue keeps one small hash per minute (`done`, `failed`, and `done:<s>`, `failed:<s>` for
  each second s of the minute), which expires an hour and two minutes after it was last
  written. The caller names the minute's hash and the second (the worker's clock).
]]
local function add_count(key, what, second, n)
  if n == 0 then
    return
  end
  redis.call('HINCRBY', key, what, n)
  redis.call('HINCRBY', key, what .. ':' .. second, n)
  redis.call('PEXPIRE', key, 3720000)
end
