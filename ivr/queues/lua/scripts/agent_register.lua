-- Create or update an agent's profile; a new agent starts offline. A = agent_id, name, skills JSON, sip_uri, languages JSON,
-- phone ('registered': offers only while its phone is registered at the edge; '' otherwise)
local aid = A[1]
local key = k('agent', aid)
local existed = redis.call('EXISTS', key)
local old_skills = agent_skills(aid)  -- staffed sets and idle indexes follow skill changes
if redis.call('HGET', key, 'state') == 'available' then R.index_agent(aid, old_skills, false) end
redis.call('HSET', key, 'agent_id', aid, 'name', A[2], 'skills', A[3], 'sip_uri', A[4], 'languages', A[5],
           'phone', A[6] or '')
for s, _ in pairs(old_skills) do redis.call('SREM', k('skill', s, 'staffed'), aid) end
if existed == 1 and redis.call('HGET', key, 'state') ~= 'offline' then
  for s, _ in pairs(agent_skills(aid)) do redis.call('SADD', k('skill', s, 'staffed'), aid) end
end
redis.call('SADD', k('agents'), aid)
if existed == 0 then
  redis.call('HSET', key, 'state', 'offline', 'state_since', NOW, 'reason', '')
elseif redis.call('HGET', key, 'state') == 'available' then
  set_agent_state(aid, 'available', 'profile')  -- skills may have changed: rebuild the idle indexes
  match_agent(aid)                                -- and callers it now qualifies for are offered
end
return existed
