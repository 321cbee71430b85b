-- Click-to-dial: the customer answered and is bridged to the agent: the call is connected (an
-- answered outbound call of its queue, if it names one); a pending case it belongs to is contacted.
-- A = call_id, offer_id
local cid, offer_id = A[1], A[2]
local ckey = k('call', cid)
local c = hgetall(ckey)
if c.offer_id ~= offer_id then return redis.error_reply('offer.stale ' .. offer_id) end
if c.state == 'connected' then return c.agent_id end
if c.state ~= 'dialing' then return redis.error_reply('offer.stale ' .. offer_id .. ' call is ' .. tostring(c.state)) end
set_call_state(ckey, 'connected', 'answered_at', NOW)
if c.queue then redis.call('HINCRBY', stats_key(c.queue), 'outbound_answered', 1) end
if redis.call('HGET', k('agent', c.agent_id), 'state') ~= 'oncall' then set_agent_state(c.agent_id, 'oncall', 'outbound') end
emit('call.answered', {call_id = cid, offer_id = offer_id, agent_id = c.agent_id,
                       waited_s = (NOW - tonumber(c.started_at or NOW)) / 1000.0})
-- a call of a complaint case (a follow-up task's, or linked to it): the customer is contacted
if (c.case_id or '') ~= '' then
  CS.call_connected(c.case_id, c.agent_id)
  CS.followup_result(c.case_id, cid, 'answered', 'answered', '')  -- a follow-up task's call (回访): done
  CS.followup_result(c.case_id, cid, 'ended', 'completed', '')
end
return c.agent_id
