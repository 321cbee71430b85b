-- Agent-requested state change. A = agent_id, state (available|break|offline), reason
local aid, state, reason = A[1], A[2], A[3]
local key = k('agent', aid)
local cur = redis.call('HGET', key, 'state')
if not cur then return redis.error_reply('agent.not_found ' .. aid) end
if cur == 'reserved' or cur == 'oncall' then
  return redis.error_reply('agent.busy agent is ' .. cur)
end
set_agent_state(aid, state, reason)
if state == 'available' then return match_agent(aid) end
return false
