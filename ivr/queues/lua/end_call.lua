-- The call is over, whatever state it was in. A = call_id, reason, wrapup seconds, ttl seconds
local cid, reason, wrapup, ttl = A[1], A[2], tonumber(A[3]), tonumber(A[4])
local ckey = k('call', cid)
local c = hgetall(ckey)
if not c.state or c.state == 'ended' then return false end
local outcome = 'completed'
if c.state == 'queued' then
  redis.call('ZREM', k('queue', c.queue, 'waiting'), cid)
  outcome = 'abandoned'
elseif c.state == 'offered' then
  outcome = 'abandoned'
  if redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
    set_agent_state(c.agent_id, 'available', 'caller_abandoned')
    match_agent(c.agent_id)
  end
elseif c.state == 'connected' then
  if redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
    if wrapup > 0 then
      set_agent_state(c.agent_id, 'wrapup', '')
      redis.call('ZADD', k('wrapup'), NOW + wrapup * 1000, c.agent_id)
    else
      set_agent_state(c.agent_id, 'available', '')
      match_agent(c.agent_id)
    end
  end
elseif c.state == 'ivr' then
  outcome = 'ivr'
end
redis.call('HSET', ckey, 'state', 'ended', 'ended_at', NOW, 'end_reason', reason, 'outcome', outcome)
redis.call('SREM', k('calls', 'active'), cid)
redis.call('SREM', k('worker', c.worker, 'calls'), cid)
redis.call('EXPIRE', ckey, ttl)
emit('call.ended', {call_id = cid, outcome = outcome, reason = reason, agent_id = c.agent_id or '',
                    queue = c.queue or '', duration_s = (NOW - tonumber(c.started_at)) / 1000.0})
return outcome
