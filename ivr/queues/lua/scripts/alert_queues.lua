-- Read only: what the queue alert rules read of a batch of queues, in one view (cheaper than a
-- queue_snapshot per queue: no pass over the agents, see alert_agents.lua).
-- A[1] = since (epoch s: the intervals starting at or after it), A[2] = the counters to read (JSON
-- list; `start` is always read), A[3..] = queue names.
-- Returns {NOW, {queue, skill or '', callers waiting, enqueue ms of the longest-waiting caller or '',
-- {interval hash as a flat field/value list...}}...}; the oldest caller as queue_snapshot.lua finds it.
local since = A[1]
local fields = cjson.decode(A[2])
table.insert(fields, 1, 'start')
local out = {}
for i = 3, #A do
  local queue = A[i]
  local skill = redis.call('HGET', k('queues'), queue)
  local row = {queue, skill or '', 0, '', {}}
  if skill then
    local wkey = k('queue', queue, 'waiting')
    local oldest = nil
    local function consider(cid)
      local q = tonumber(redis.call('HGET', k('call', cid), 'queued_at') or '')
      if q and (oldest == nil or q < oldest) then oldest = q end
    end
    local banded, heads = 0, {}
    for band = 0, 9 do
      local lo, hi = string.format('%d', band * 1e13), string.format('(%d', (band + 1) * 1e13)
      banded = banded + redis.call('ZCOUNT', wkey, lo, hi)
      local head = redis.call('ZRANGEBYSCORE', wkey, lo, hi, 'LIMIT', 0, 1)
      if head[1] then heads[#heads + 1] = head[1] end
    end
    local waiting = redis.call('ZCARD', wkey)
    if banded == waiting then
      for _, cid in ipairs(heads) do consider(cid) end
    else
      for _, cid in ipairs(redis.call('ZRANGE', wkey, 0, -1)) do consider(cid) end
    end
    local intervals = {}
    for _, start in ipairs(redis.call('ZRANGEBYSCORE', k('queue', queue, 'intervals'), since, '+inf')) do
      local v = redis.call('HMGET', k('queue', queue, 'interval', start), unpack(fields))
      if v[1] then
        local h = {}
        for j, f in ipairs(fields) do
          if v[j] then h[#h + 1] = f; h[#h + 1] = v[j] end
        end
        intervals[#intervals + 1] = h
      end
    end
    row = {queue, skill, waiting, oldest and string.format('%d', oldest) or '', intervals}
  end
  out[#out + 1] = row
end
return {NOW, out}
