--[[ group_member: records that members of a group ended, each once, and enqueues the group's
  callback when the last one did: exactly once, whichever members end together on whichever
  workers, and however many times an errand is run.

  The group's hash lives in its callback's queue (same slot as the pending list):
    total, left     how many members, how many not ended yet
    head, mid, tail the callback's payload around its argument and its enqueue time: the
                    results go between head and mid as a JSON array, in member order, and the
                    server's time (ms) between mid and tail (text concatenated, never parsed)
    skip            "1" when failed members are left out of the results, "0" when one fails
                    the group
    doomed          the jobs that will not run when the group fails (the callback and what
                    follows it), for the worker to mark as dead
    failed          the error that failed the group, once one did
    told            "1" once a worker marked the doomed jobs dead (until then, every call
                    returns them: a worker that failed to mark them, or died, is not the last)
    r<i>, x<i>      member i's result (JSON) or error, until every member ended
    done            "1" once every member ended
    called          "1" once the callback was enqueued (a group that got there did not fail,
                    whatever is marked later)

  KEYS[1] the group's hash
  KEYS[2] pending list of the callback's queue
  ARGV[1] how long the group's hash is kept after its last change, ms
  ARGV[2..] for each member that ended, three: its index (0-based), "ok" or "failed", its
            result (JSON) or its error

  Returns {code, doomed}: code -1 no such group (it expired), 2 the group failed and its
  doomed jobs are not marked dead yet (doomed: the jobs to mark), else 1 when this call
  enqueued the callback, 0 when it recorded its members (or had recorded them already: a
  repeated errand). Once every member ended, only the summary stays (`done`, the counts,
  `failed`, `told`), until the hash expires.
]]
local group = KEYS[1]
if redis.call('EXISTS', group) == 0 then
  return { -1, '' }
end
local skip = redis.call('HGET', group, 'skip') == '1'
local failed = redis.call('HEXISTS', group, 'failed') == 1
local code = 0
local left = nil
local done = redis.call('HGET', group, 'done') == '1'
for i = 2, (done and 1 or #ARGV), 3 do
  local index = ARGV[i]
  if redis.call('HEXISTS', group, 'r' .. index) == 0 and redis.call('HEXISTS', group, 'x' .. index) == 0 then
    if ARGV[i + 1] == 'ok' then
      redis.call('HSET', group, 'r' .. index, ARGV[i + 2])
    else
      redis.call('HSET', group, 'x' .. index, ARGV[i + 2])
      if not failed and not skip then
        redis.call('HSET', group, 'failed', ARGV[i + 2])
        failed = true
      end
    end
    left = redis.call('HINCRBY', group, 'left', -1)
  end
end
if left ~= nil then
  redis.call('PEXPIRE', group, ARGV[1])
end
if left ~= nil and left <= 0 then
  -- The last member: unless the group failed, the callback gets every result, in member order.
  local total = tonumber(redis.call('HGET', group, 'total'))
  if not failed then
    local results = {}
    for i = 0, total - 1 do
      local value = redis.call('HGET', group, 'r' .. i)
      if value then
        results[#results + 1] = value
      end
    end
    local time = redis.call('TIME')
    local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    local payload = redis.call('HGET', group, 'head') .. '[' .. table.concat(results, ',') .. ']'
      .. redis.call('HGET', group, 'mid') .. string.format('%d', now)
      .. redis.call('HGET', group, 'tail')
    redis.call('RPUSH', KEYS[2], payload)
    redis.call('HSET', group, 'called', '1')
    code = 1
  end
  -- Only the summary is kept: `done` tells a repeated errand apart.
  redis.call('HSET', group, 'done', '1')
  local ended = {}
  for i = 0, total - 1 do
    ended[#ended + 1] = 'r' .. i
    ended[#ended + 1] = 'x' .. i
    if #ended >= 1000 or i == total - 1 then
      redis.call('HDEL', group, unpack(ended))
      ended = {}
    end
  end
  redis.call('HDEL', group, 'head', 'mid', 'tail')
end
if failed and redis.call('HGET', group, 'told') ~= '1' and redis.call('HGET', group, 'called') ~= '1' then
  return { 2, redis.call('HGET', group, 'doomed') or '' }
end
return { code, '' }
