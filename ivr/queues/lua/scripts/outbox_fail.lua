-- A delivery attempt failed. Refused (dead = '1', a 4xx) or out of attempts: a dead letter.
-- Otherwise the endpoint backs off for delay_ms (its next attempt, and every other delivery of
-- the endpoint, waits: the events stay in order and a receiver that is down is not hammered).
-- A = delivery id, lease token, status ('' when none), error, dead ('1'/'0'), delay_ms,
--     max_attempts, dead_max
-- Returns 'retry', 'dead', or 'stale' (the lease was lost: another holder has the delivery).
local did, token, status, err = A[1], A[2], A[3], A[4]
local dead_now, delay, max_attempts, dead_max = A[5] == '1', tonumber(A[6]), tonumber(A[7]), tonumber(A[8])
local dkey = delivery_key(did)
local f = redis.call('HMGET', dkey, 'endpoint', 'lease', 'attempts')
local ep = f[1]
if not ep or f[2] ~= token then return 'stale' end
redis.call('ZREM', inflight_key(ep), did)
redis.call('HSET', dkey, 'lease', '', 'last_error', err, 'last_status', status, 'last_failure_at', NOW)
local st = state_key(ep)
redis.call('HSET', st, 'last_failure_at', NOW, 'last_error', err, 'last_status', status)
if dead_now or tonumber(f[3]) >= max_attempts then
  redis.call('ZREM', queue_key(ep), did)
  redis.call('HSET', dkey, 'state', 'dead', 'died_at', NOW)
  redis.call('HDEL', dkey, 'next_at')
  local dk = dead_key(ep)
  redis.call('ZADD', dk, NOW, did)
  redis.call('HINCRBY', st, 'dead', 1)
  local extra = redis.call('ZCARD', dk) - dead_max
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', dk, 0, extra - 1)) do redis.call('DEL', delivery_key(old)) end
    redis.call('ZREMRANGEBYRANK', dk, 0, extra - 1)
  end
  if not dead_now then
    redis.call('HINCRBY', st, 'failures', 1)
    redis.call('HSET', st, 'paused_until', NOW + delay)
  end
  return 'dead'
end
redis.call('HINCRBY', st, 'failures', 1)
redis.call('HSET', st, 'paused_until', NOW + delay)
redis.call('HSET', dkey, 'next_at', NOW + delay)
return 'retry'
