-- Delete an agent (admin). Not while it holds a call. A = agent_id
local aid = A[1]
local key = k('agent', aid)
local cur = redis.call('HGET', key, 'state')
if not cur then return redis.error_reply('agent.not_found ' .. aid) end
if cur == 'reserved' or cur == 'oncall' then
  return redis.error_reply('agent.busy agent is ' .. cur)
end
set_agent_state(aid, 'offline', 'deleted')  -- leaves every routing index and staffed set
for s, _ in pairs(agent_skills(aid)) do redis.call('SREM', k('skill', s, 'staffed'), aid) end
redis.call('ZREM', k('wrapup'), aid)
local digest = redis.call('GET', k('agent', aid, 'token'))
if digest then redis.call('HDEL', k('tokens'), digest) end
redis.call('DEL', key, k('agent', aid, 'desktop'), k('agent', aid, 'token'))
redis.call('SREM', k('agents'), aid)
redis.call('HDEL', k('sip', 'credentials'), aid)
redis.call('SREM', k('phones', 'registered'), aid)
emit('agent.deleted', {agent_id = aid})
return 1
