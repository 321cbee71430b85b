-- The offer was not answered (ring-no-answer, busy, unreachable): the caller goes back to the head of
-- its queue (keeps its place) and the agent to `break` with the reason. A = call_id, offer_id, reason
-- Only an offer still in flight can fail (offer.stale otherwise: answered, failed already, or the
-- caller hung up meanwhile, when the agent was already released).
local cid, offer_id, reason = A[1], A[2], A[3]
local ckey = k('call', cid)
local c = hgetall(ckey)
if c.offer_id ~= offer_id or c.state ~= 'offered' then return redis.error_reply('offer.stale ' .. offer_id) end
set_agent_state(c.agent_id, 'break', reason)
set_call_state(ckey, 'queued')
redis.call('HDEL', ckey, 'agent_id', 'offer_id')
R.queue_call(cid)
emit('call.offer_failed', {call_id = cid, offer_id = offer_id, agent_id = c.agent_id, reason = reason})
return match_call(cid)
