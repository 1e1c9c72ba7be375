--[[ outcomes (included at the top of the scripts that keep jobs' outcomes): the one way an
  outcome record is written.

  Outcomes live in hashes, each holding the records of the jobs created in one span of time
  (job id -> record). A hash is kept as long as the longest-kept record written into it: its
  expiry is pushed later, never brought earlier, so a record lives at least its own time.
]]

-- Writes `fields` (id, record, id, record, ...) into the results hash `key` and keeps the hash
-- at least `ttl` ms from now (a number; the worker caps it at 100 years, so that it converts
-- back to an integer PEXPIRE accepts).
local function keep_outcomes(key, fields, ttl)
  -- In slices: `unpack` cannot spread more than a few thousand values.
  for from = 1, #fields, 1000 do
    redis.call('HSET', key, unpack(fields, from, math.min(from + 999, #fields)))
  end
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, string.format('%d', ttl))
  end
end
