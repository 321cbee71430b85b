-- Set one plain field (e.g. disposition) on an existing call record. A = call_id, field, value
local cid = A[1]
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
redis.call('HSET', ckey, A[2], A[3])
return 1
