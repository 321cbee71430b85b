-- Cancel a pending callback. A = callback id, who cancelled, seconds the cancelled record is kept
local id = A[1]
local key = k('callback', id)
local cb = redis.call('HMGET', key, 'state', 'queue', 'call_id')
if not cb[1] then return redis.error_reply('callback.not_found ' .. id) end
if cb[1] ~= 'pending' then return redis.error_reply('callback.not_pending callback ' .. id .. ' is ' .. cb[1]) end
local st = redis.call('HGET', k('call', id), 'state')
if st and st ~= 'booked' and st ~= 'scheduled' and st ~= 'queued' then
  return redis.error_reply('callback.not_pending callback ' .. id .. ' is being called')
end
CB.end_record(id, 'cancelled', 'cancelled')
CB.close(id, 'cancelled', tonumber(A[3]))
redis.call('HSET', key, 'cancelled_by', A[2])
emit('callback.cancelled', {callback_id = id, call_id = cb[3], queue = cb[2], by = A[2]})
return 1
