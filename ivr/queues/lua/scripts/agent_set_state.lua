-- Agent-requested state change. A = agent_id, state (available|break|offline), reason
-- Not while the agent holds a call; an agent reserved for a case's follow-up task may go on break or
-- log off (the task goes back: set_agent_state), or decline it to be available.
local aid, state, reason = A[1], A[2], A[3]
local key = k('agent', aid)
local cur = redis.call('HGET', key, 'state')
if not cur then return redis.error_reply('agent.not_found ' .. aid) end
if cur == 'reserved' or cur == 'oncall' then
  local held = redis.call('HMGET', key, 'task', 'call_id')
  if cur == 'oncall' or not held[1] or held[2] then
    return redis.error_reply('agent.busy agent is ' .. cur)
  end
  if state == 'available' then
    return redis.error_reply('agent.busy agent holds the follow-up task of ' .. held[1] .. ': accept or decline it')
  end
end
set_agent_state(aid, state, reason)
if state == 'available' then return match_agent(aid) end
return false
