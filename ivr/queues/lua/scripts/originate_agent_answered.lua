-- Click-to-dial: the agent answered its phone; the worker dials the customer now (call.dialing).
-- The agent is on the call (oncall) from here on. A = call_id, offer_id, caller_id (as dialled)
local cid, offer_id = A[1], A[2]
local ckey = k('call', cid)
local c = redis.call('HMGET', ckey, 'offer_id', 'state', 'agent_id', 'queue')
if c[1] ~= offer_id or c[2] ~= 'dialing' then return redis.error_reply('offer.stale ' .. offer_id) end
if redis.call('HGET', k('agent', c[3]), 'call_id') == cid then set_agent_state(c[3], 'oncall', 'outbound') end
redis.call('HSET', ckey, 'agent_answered_at', NOW, 'dialed_at', NOW, 'caller_id', A[3], 'dnis', A[3])
emit('call.dialing', {call_id = cid, offer_id = offer_id, agent_id = c[3], queue = c[4] or ''})
return 1
