-- Acknowledge an active alert: A[1] id, A[2] by, A[3] now ms. Stays active until it clears; emits
-- alert.acknowledged the first time (again: unchanged, no event). Returns the alert's JSON.
local raw = redis.call('GET', k('alert', A[1]))
if not raw then return redis.error_reply('alert.not_found no alert ' .. A[1]) end
local a = cjson.decode(raw)
local json = redis.call('HGET', ACTIVE, a.key)
local active = json and cjson.decode(json)
if not active or active.id ~= A[1] then
  return redis.error_reply('alert.not_active alert ' .. A[1] .. ' has cleared')
end
if active.acked_by ~= nil and active.acked_by ~= '' then return json end
active.acked_by = A[2]
active.acked_at = tonumber(A[3])
json = cjson.encode(active)
redis.call('HSET', ACTIVE, a.key, json)
redis.call('SET', k('alert', A[1]), json)
emit('alert.acknowledged', {id = active.id, rule = active.rule, queue = active.queue, severity = active.severity,
                            by = A[2], acked_at = active.acked_at})
return json
