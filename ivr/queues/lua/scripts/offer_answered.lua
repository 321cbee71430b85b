-- The agent answered the offer. A = call_id, offer_id
-- Only an offer still in flight can be answered (offer.stale otherwise: failed, superseded, or the
-- caller hung up meanwhile). Answering it again (a retry whose first reply was lost) changes nothing.
local cid, offer_id = A[1], A[2]
local ckey = k('call', cid)
local cur = redis.call('HMGET', ckey, 'offer_id', 'state', 'agent_id')
if cur[1] ~= offer_id then return redis.error_reply('offer.stale ' .. offer_id) end
if cur[2] == 'connected' then return cur[3] end
if cur[2] ~= 'offered' then return redis.error_reply('offer.stale ' .. offer_id .. ' call is ' .. tostring(cur[2])) end
local aid = cur[3]
set_call_state(ckey, 'connected', 'answered_at', NOW)
set_agent_state(aid, 'oncall', '')
local q = tonumber(redis.call('HGET', ckey, 'queued_at') or NOW)
record_departure(ckey)
local waited = stats_answered(ckey) or math.max(0, NOW - q)  -- the wait the record keeps (waited_ms)
index_call(cid, hgetall(ckey), {aid})
emit('call.answered', {call_id = cid, offer_id = offer_id, agent_id = aid, waited_s = waited / 1000.0})
return aid
