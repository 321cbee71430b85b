-- Cancel a pending callback. A = callback id, who cancelled, seconds the cancelled record is kept
local id = A[1]
local key = k('callback', id)
local cb = redis.call('HMGET', key, 'state', 'queue', 'call_id')
if not cb[1] then return redis.error_reply('callback.not_found ' .. id) end
if cb[1] ~= 'pending' then return redis.error_reply('callback.not_pending callback ' .. id .. ' is ' .. cb[1]) end
redis.call('ZREM', k('queue', cb[2], 'callbacks'), id)
redis.call('HSET', key, 'state', 'cancelled', 'ended_at', NOW, 'cancelled_by', A[2])
redis.call('EXPIRE', key, tonumber(A[3]))
emit('callback.cancelled', {callback_id = id, call_id = cb[3], queue = cb[2], by = A[2]})
return 1
