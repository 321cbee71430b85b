-- Dead letters back into their endpoint's outbox, attempts reset, at their place in event order.
-- A = delivery id, or '' with an endpoint and a maximum count (the oldest first).
-- Returns how many were put back (0 for an id that is not a dead letter).
local function replay(did)
  local dkey = delivery_key(did)
  local f = redis.call('HMGET', dkey, 'endpoint', 'state', 'order')
  if not f[1] or f[2] ~= 'dead' then return 0 end
  redis.call('ZREM', dead_key(f[1]), did)
  redis.call('ZADD', queue_key(f[1]), f[3], did)
  redis.call('HSET', dkey, 'state', 'pending', 'attempts', 0, 'replayed_at', NOW)
  redis.call('HINCRBY', dkey, 'replays', 1)
  redis.call('HDEL', dkey, 'died_at')
  return 1
end
if A[1] ~= '' then return replay(A[1]) end
local n = 0
for _, did in ipairs(redis.call('ZRANGE', dead_key(A[2]), 0, tonumber(A[3]) - 1)) do n = n + replay(did) end
return n
