-- A worker dials the customer of callback `cid` for offer `offer_id` (the agent stays reserved).
-- A = call_id (= the callback id), offer_id. Returns the attempt number (1 = the first).
local cid, offer_id = A[1], A[2]
local ckey = k('call', cid)
local cur = redis.call('HMGET', ckey, 'offer_id', 'state', 'confirmed_at')
if cur[1] ~= offer_id or cur[2] ~= 'offered' or cur[3] then return redis.error_reply('offer.stale ' .. offer_id) end
local n = redis.call('HINCRBY', ckey, 'attempts', 1)
redis.call('HSET', ckey, 'dialed_at', NOW)
redis.call('HSET', k('callback', cid), 'state', 'dialing', 'attempts', n)
local c = redis.call('HMGET', ckey, 'queue', 'agent_id', 'worker', 'origin_call_id')
emit('callback.dialing', {callback_id = cid, call_id = cid, origin_call_id = c[4] or '', queue = c[1] or '',
                          agent_id = c[2] or '', worker = c[3] or '', attempt = n})
return n
