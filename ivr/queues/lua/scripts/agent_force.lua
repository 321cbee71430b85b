-- A supervisor sets an agent's state (break, offline = signed out, available). A = agent_id, state,
-- reason, by (the supervisor), force ('1' or '0').
-- An agent that is not on a call changes at once (an agent reserved only for a case's follow-up task
-- too: the task goes back). An agent on a call (reserved for it or connected): refused with agent.busy,
-- unless `force` and the state is break or offline: then the change is kept on the agent
-- (pending_state, pending_reason, pending_by, pending_at) and set_agent_state applies it when the
-- call and its wrap-up are over (agent.state_pending tells the desktop and the floor now).
-- Returns JSON {applied = true, offer = <offer JSON or false>} or {applied = false, pending = state}.
local aid, state, reason, by, force = A[1], A[2], A[3], A[4], A[5] == '1'
local key = k('agent', aid)
local cur = redis.call('HGET', key, 'state')
if not cur then return redis.error_reply('agent.not_found ' .. aid) end
local busy = false
if cur == 'reserved' or cur == 'oncall' then
  local held = redis.call('HMGET', key, 'task', 'call_id')
  busy = cur == 'oncall' or not held[1] or held[2] ~= false
  if not busy and state == 'available' then
    return redis.error_reply('agent.busy agent holds the follow-up task of ' .. held[1] .. ': it accepts or declines it')
  end
end
if busy then
  if state == 'available' then return redis.error_reply('agent.busy agent is ' .. cur) end
  if not force then
    return redis.error_reply('agent.busy agent is ' .. cur .. ': force applies the change after the call')
  end
  redis.call('HSET', key, 'pending_state', state, 'pending_reason', reason, 'pending_by', by, 'pending_at', NOW)
  emit('agent.state_pending', {agent_id = aid, state = state, reason = reason, by = by, current = cur})
  return cjson.encode({applied = false, pending = state})
end
set_agent_state(aid, state, reason, by)
local offer = false
if state == 'available' then offer = match_agent(aid) end
return cjson.encode({applied = true, offer = offer})
