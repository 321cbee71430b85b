-- A delivery was accepted (2xx): it leaves the outbox; the endpoint's failure streak ends.
-- A = delivery id, status. Returns 1, or 0 when the delivery is gone (another holder finished it).
local did = A[1]
local dkey = delivery_key(did)
local ep = redis.call('HGET', dkey, 'endpoint')
if not ep then return 0 end
redis.call('ZREM', queue_key(ep), did)
redis.call('ZREM', inflight_key(ep), did)
redis.call('ZREM', dead_key(ep), did)
redis.call('DEL', dkey)
local st = state_key(ep)
redis.call('HINCRBY', st, 'delivered', 1)
redis.call('HSET', st, 'failures', 0, 'last_success_at', NOW, 'last_status', A[2])
redis.call('HDEL', st, 'paused_until')
return 1
