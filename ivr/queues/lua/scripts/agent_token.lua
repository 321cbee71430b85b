-- Give an agent a new token (its SHA-256); the previous one stops working at once.
-- A = agent_id, digest, user JSON {id, role}
local aid, digest = A[1], A[2]
if redis.call('EXISTS', k('agent', aid)) == 0 then return redis.error_reply('agent.not_found ' .. aid) end
local old = redis.call('GET', k('agent', aid, 'token'))
if old then redis.call('HDEL', k('tokens'), old) end
redis.call('SET', k('agent', aid, 'token'), digest)
redis.call('HSET', k('tokens'), digest, A[3])
return 1
