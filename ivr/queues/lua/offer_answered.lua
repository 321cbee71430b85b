-- The agent answered the offer. A = call_id, offer_id
local cid, offer_id = A[1], A[2]
local ckey = k('call', cid)
if redis.call('HGET', ckey, 'offer_id') ~= offer_id then return redis.error_reply('offer.stale ' .. offer_id) end
local aid = redis.call('HGET', ckey, 'agent_id')
redis.call('HSET', ckey, 'state', 'connected', 'answered_at', NOW)
set_agent_state(aid, 'oncall', '')
local q = tonumber(redis.call('HGET', ckey, 'queued_at') or NOW)
record_departure(ckey)
stats_answered(ckey)
emit('call.answered', {call_id = cid, offer_id = offer_id, agent_id = aid, waited_s = (NOW - q) / 1000.0})
return aid
