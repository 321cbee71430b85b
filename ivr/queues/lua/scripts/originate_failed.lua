-- Click-to-dial: the call never connected (the agent did not answer, the customer was busy, did not
-- answer, refused, or the agent hung up while the customer rang). The record ends with `outcome`
-- and the agent goes to `agent_state` (available: offered the next caller at once; break after a
-- ring-no-answer, as for an inbound offer). A = call_id, offer_id, outcome, reason, agent_state, ttl
-- Returns the outcome; false when the call was not dialing (ended meanwhile: nothing changes).
local cid, offer_id, outcome, reason, astate, ttl = A[1], A[2], A[3], A[4], A[5], tonumber(A[6])
local ckey = k('call', cid)
local c = hgetall(ckey)
if c.offer_id ~= offer_id or c.state ~= 'dialing' then return false end
if c.agent_id and redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
  set_agent_state(c.agent_id, astate, reason)
  if astate == 'available' then match_agent(c.agent_id) end
end
if c.queue then redis.call('HINCRBY', stats_key(c.queue), 'outbound_failed', 1) end
set_call_state(ckey, 'ended', 'ended_at', NOW, 'end_reason', reason, 'outcome', outcome)
redis.call('SREM', k('calls', 'active'), cid)
redis.call('SREM', k('worker', c.worker, 'calls'), cid)
redis.call('EXPIRE', ckey, ttl)
emit('call.ended', {call_id = cid, outcome = outcome, reason = reason, agent_id = c.agent_id or '',
                    queue = c.queue or '', duration_s = (NOW - tonumber(c.started_at or NOW)) / 1000.0})
-- a follow-up task's call (回访) that did not reach the customer: another attempt later, or failed;
-- one that never dialled the customer (the agent did not answer, refused, hung up) is offered again
if (c.case_id or '') ~= '' then
  local agent_side = outcome == 'agent_no_answer' or outcome == 'agent_rejected' or outcome == 'cancelled'
  CS.followup_result(c.case_id, cid, agent_side and 'not_dialled' or 'not_reached', outcome, reason)
end
return outcome
