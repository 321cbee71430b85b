-- The customer of callback `cid` answered and pressed the confirmation key: the reserved agent is
-- rung next (offer_answered / offer_failed as for any call). A = call_id, offer_id.
local cid, offer_id = A[1], A[2]
local ckey = k('call', cid)
if redis.call('HGET', ckey, 'offer_id') ~= offer_id then return redis.error_reply('offer.stale ' .. offer_id) end
redis.call('HSET', ckey, 'confirmed_at', NOW)
redis.call('HSET', k('callback', cid), 'state', 'connected')
local c = redis.call('HMGET', ckey, 'queue', 'agent_id', 'attempts', 'origin_call_id')
emit('callback.connected', {callback_id = cid, call_id = cid, origin_call_id = c[4] or '', queue = c[1] or '',
                            agent_id = c[2] or '', attempt = tonumber(c[3] or 0)})
return 1
