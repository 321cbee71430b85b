-- Give a claimed delivery back at once: its holder stops (the API shuts down) before it knows the
-- outcome. The next claim takes it again, in order, instead of waiting for the lease to expire.
-- The attempt is not counted as a failure (the receiver may have it: deliveries are at least once).
-- A = delivery id, token. Returns 1, or 0 when the lease is no longer this holder's.
local did, token = A[1], A[2]
local dkey = delivery_key(did)
local f = redis.call('HMGET', dkey, 'endpoint', 'lease')
if not f[1] or f[2] ~= token then return 0 end
redis.call('ZREM', inflight_key(f[1]), did)
redis.call('HSET', dkey, 'lease', '', 'last_error', 'released')
return 1
