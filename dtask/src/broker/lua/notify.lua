--[[ notify (included in ack; alone as notify_finished): tells the waiters of jobs that just got
  their final outcome (succeeded, dead, cancelled). A waiter notes its job in the queue's
  watched set (ZSET job id -> until when it waits, ms) before it reads the job's outcome; jobs
  found there are removed from it and published, with their records, on the queue's finished
  channel, one message for all of them: `<bytes>:<id><bytes>:<record>` for each (lengths in
  bytes, so an id or a record may hold any character). A queue nobody waits on pays one EXISTS
  per call.

  notify_waiters(watched_key, channel, ids, records)
]]
local function notify_waiters(watched, channel, ids, records)
  if #ids == 0 or redis.call('EXISTS', watched) == 0 then
    return
  end
  local lines = {}
  local gone = {}
  local from = 1
  -- ZMSCORE in slices, so that a large batch stays within Lua's stack.
  while from <= #ids do
    local to = math.min(from + 999, #ids)
    local scores = redis.call('ZMSCORE', watched, unpack(ids, from, to))
    for i = from, to do
      if scores[i - from + 1] then
        lines[#lines + 1] = #ids[i] .. ':' .. ids[i] .. #records[i] .. ':' .. records[i]
        gone[#gone + 1] = ids[i]
      end
    end
    from = to + 1
  end
  if #gone > 0 then
    redis.call('ZREM', watched, unpack(gone))
    redis.call('PUBLISH', channel, table.concat(lines))
  end
end
