-- Put a call in a skill queue and try to match it at once.
-- A = call_id, queue, skill, priority (0..9, higher first), journey JSON
local cid, queue, skill, prio = A[1], A[2], A[3], tonumber(A[4])
local ckey = k('call', cid)
if redis.call('SISMEMBER', k('calls', 'active'), cid) == 0 then
  return redis.error_reply('call.not_found ' .. cid)
end
redis.call('HSET', ckey, 'state', 'queued', 'queue', queue, 'skill', skill, 'priority', prio,
           'queued_at', NOW, 'journey', A[5])
redis.call('HSET', k('queues'), queue, skill)
-- Higher priority first, then first come first served.
redis.call('ZADD', k('queue', queue, 'waiting'), (9 - prio) * 1e13 + NOW, cid)
stats_offered(queue)
emit('call.queued', {call_id = cid, queue = queue, skill = skill, priority = prio})
return match_queue(queue)
