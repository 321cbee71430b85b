-- Read only: a queue's real-time statistics (ivr/queues/stats.py), in one consistent view.
-- A = queue, since (epoch seconds: intervals starting at or after it are returned).
-- Returns false for a queue never used, else {now ms, skill, callers waiting, enqueue time (ms) of the
-- longest-waiting caller or '', {state, agents with the queue's skill in it...}, {interval hash as a
-- flat field/value list...}}.
local queue, since = A[1], A[2]
local skill = redis.call('HGET', k('queues'), queue)
if not skill then return false end
local wkey = k('queue', queue, 'waiting')
-- The longest wait is the earliest queued_at of the waiting calls. The waiting score is
-- (9 - priority) * 1e13 + queued_at (enqueue.lua), so the oldest caller is the head of one of the ten
-- priority bands: only those heads are read. Should the scores ever not fall in the bands, every
-- waiting call is read instead.
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
if banded == redis.call('ZCARD', wkey) then
  for _, cid in ipairs(heads) do consider(cid) end
else
  for _, cid in ipairs(redis.call('ZRANGE', wkey, 0, -1)) do consider(cid) end
end
local counts = {}
for _, aid in ipairs(redis.call('SMEMBERS', k('agents'))) do
  local a = redis.call('HMGET', k('agent', aid), 'state', 'skills')
  if a[1] and cjson.decode(a[2] or '{}')[skill] then counts[a[1]] = (counts[a[1]] or 0) + 1 end
end
local agents = {}
for state, n in pairs(counts) do agents[#agents + 1] = state; agents[#agents + 1] = n end
local intervals = {}
for _, start in ipairs(redis.call('ZRANGEBYSCORE', k('queue', queue, 'intervals'), since, '+inf')) do
  local h = redis.call('HGETALL', k('queue', queue, 'interval', start))
  if #h > 0 then intervals[#intervals + 1] = h end
end
return {NOW, skill, redis.call('ZCARD', wkey), oldest and string.format('%d', oldest) or '', agents, intervals}
