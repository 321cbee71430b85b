-- Read only: agents' figures by interval (ivr/queues/agent_stats.py), in one consistent view.
-- A = from (epoch s), to (epoch s, exclusive), agent ids... (the caller sends a bounded batch).
-- Returns {now ms, {agent id, state or '', state_since or '', {interval hash as a flat list...}}...}.
local from, to = A[1], '(' .. A[2]
local out = {}
for i = 3, #A do
  local aid = A[i]
  local a = redis.call('HMGET', k('agent', aid), 'state', 'state_since')
  local rows = {}
  for _, start in ipairs(redis.call('ZRANGEBYSCORE', k('agent', aid, 'intervals'), from, to)) do
    local h = redis.call('HGETALL', k('agent', aid, 'interval', start))
    if #h > 0 then rows[#rows + 1] = h end
  end
  out[#out + 1] = {aid, a[1] or '', a[2] or '', rows}
end
return {NOW, out}
