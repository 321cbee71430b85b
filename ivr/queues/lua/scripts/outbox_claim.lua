-- Claim the endpoint's next delivery with a lease (at-least-once: a holder that dies releases it
-- when its lease expires). Deliveries go in event order; while the endpoint backs off after a
-- failure nothing is claimed; at most max_in_flight are under way at once.
-- A = endpoint, max_in_flight, lease_ms, token
-- Returns {delivery id, body, attempts, failures in a row, event id, type} or {'', wait_ms}
-- (wait_ms -1: nothing pending).
local ep, max_in_flight, lease_ms, token = A[1], tonumber(A[2]), tonumber(A[3]), A[4]
local q, inf = queue_key(ep), inflight_key(ep)
for _, did in ipairs(redis.call('ZRANGEBYSCORE', inf, '-inf', NOW)) do
  redis.call('ZREM', inf, did)
  if redis.call('EXISTS', delivery_key(did)) == 1 then
    redis.call('HSET', delivery_key(did), 'lease', '', 'last_error', 'lease_expired')
  end
end
local paused = tonumber(redis.call('HGET', state_key(ep), 'paused_until') or '0')
if paused > NOW then return {'', paused - NOW} end
local busy = redis.call('ZCARD', inf)
if busy >= max_in_flight then
  local first = redis.call('ZRANGE', inf, 0, 0, 'WITHSCORES')
  return {'', math.max(1, tonumber(first[2]) - NOW)}
end
if redis.call('ZCARD', q) == 0 then return {'', -1} end
for _, did in ipairs(redis.call('ZRANGE', q, 0, busy + max_in_flight)) do
  if not redis.call('ZSCORE', inf, did) then
    local dkey = delivery_key(did)
    local f = redis.call('HMGET', dkey, 'body', 'event_id', 'type')
    if not f[1] then
      redis.call('ZREM', q, did)  -- its hash is gone (trimmed): nothing to deliver
    else
      redis.call('ZADD', inf, NOW + lease_ms, did)
      local attempts = redis.call('HINCRBY', dkey, 'attempts', 1)
      redis.call('HSET', dkey, 'lease', token, 'last_attempt_at', NOW)
      local failures = tonumber(redis.call('HGET', state_key(ep), 'failures') or '0')
      return {did, f[1], attempts, failures, f[2], f[3]}
    end
  end
end
return {'', -1}
