--[[ mark_group: sets one field of a group's hash (see `group_member.lua`), only while the group
  is there (a field alone would make a hash without its expiry), and, for "failed", only while
  the group is not done and has not failed already (a group whose callback was enqueued is not
  failed afterwards).

  KEYS[1] the group's hash
  ARGV[1] the field: "failed" (ARGV[2] the error) or "told" (ARGV[2] "1")
  ARGV[2] its value

  Returns 1 when set, 0 when not.
]]
if not redis.call('HGET', KEYS[1], 'total') then
  return 0
end
if ARGV[1] == 'failed' then
  if redis.call('HGET', KEYS[1], 'done') == '1' then
    return 0
  end
  return redis.call('HSETNX', KEYS[1], 'failed', ARGV[2])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
