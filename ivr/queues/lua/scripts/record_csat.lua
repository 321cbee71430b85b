-- The caller's satisfaction score from a survey. A = call_id, csat (1..5, checked by the caller)
local cid, csat = A[1], tonumber(A[2])
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
redis.call('HSET', ckey, 'csat', csat, 'csat_at', NOW)
local c = redis.call('HMGET', ckey, 'queue', 'agent_id', 'hotline')
emit('call.csat', {call_id = cid, csat = csat, queue = c[1] or '', agent_id = c[2] or '', hotline = c[3] or ''})
return csat
