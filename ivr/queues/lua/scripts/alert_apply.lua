-- One evaluation's changes, atomically (only while A[1] holds the evaluator's lease): raise the new
-- alerts (skipped when one is active for the rule and queue: deduplicated), clear the recovered ones,
-- move the hysteresis timers; keep the history (A[2] ms, at most A[3] alerts) and emit
-- alert.raised / alert.cleared. A[4] = JSON {now, raise: [alert], clear: [{key, value, message}],
-- pending: {key: since_ms}, unpend: [key]}. Returns JSON {raised: [alert], cleared: [alert]}.
if redis.call('GET', k('alerts', 'lease')) ~= A[1] then
  return redis.error_reply('alerts.not_leader the evaluator lease is held by another instance')
end
local keep_ms, cap = tonumber(A[2]), tonumber(A[3])
local req = cjson.decode(A[4])
local now = tonumber(req.now)
local raised, cleared = {}, {}

for _, a in ipairs(req.raise or {}) do
  if redis.call('HEXISTS', ACTIVE, a.key) == 0 then
    a.id = 'AL' .. redis.call('INCR', k('alerts', 'seq'))
    a.raised_at = now
    a.cleared_at = cjson.null
    a.acked_by = ''
    a.acked_at = cjson.null
    local json = cjson.encode(a)
    redis.call('HSET', ACTIVE, a.key, json)
    redis.call('SET', k('alert', a.id), json)
    redis.call('ZADD', HISTORY, now, a.id)
    redis.call('HDEL', PENDING, a.key)
    emit('alert.raised', {id = a.id, rule = a.rule, metric = a.metric, queue = a.queue, severity = a.severity,
                          value = a.value, threshold = a.threshold, clear_at = a.clear_at, direction = a.direction,
                          raised_at = now, cleared_at = cjson.null, message = a.message, sound = a.sound})
    raised[#raised + 1] = a
  end
end

for _, c in ipairs(req.clear or {}) do
  local json = redis.call('HGET', ACTIVE, c.key)
  if json then
    local a = cjson.decode(json)
    a.cleared_at = now
    a.clear_value = c.value
    a.clear_message = c.message
    redis.call('HDEL', ACTIVE, c.key)
    redis.call('HDEL', PENDING, c.key)
    redis.call('SET', k('alert', a.id), cjson.encode(a))
    redis.call('ZADD', HISTORY, a.raised_at, a.id)
    emit('alert.cleared', {id = a.id, rule = a.rule, metric = a.metric, queue = a.queue, severity = a.severity,
                           value = c.value, threshold = a.threshold, clear_at = a.clear_at, direction = a.direction,
                           raised_at = a.raised_at, cleared_at = now, message = c.message, sound = a.sound,
                           acked_by = a.acked_by, acked_at = a.acked_at})
    cleared[#cleared + 1] = a
  end
end

for key, since in pairs(req.pending or {}) do redis.call('HSET', PENDING, key, since) end
for _, key in ipairs(req.unpend or {}) do redis.call('HDEL', PENDING, key) end

-- the history: older than keep_ms, or beyond cap entries (oldest first), at most 500 a run
local old = redis.call('ZRANGEBYSCORE', HISTORY, '-inf', string.format('%d', now - keep_ms), 'LIMIT', 0, 500)
local over = redis.call('ZCARD', HISTORY) - #old - cap
if over > 0 then
  local more = redis.call('ZRANGE', HISTORY, #old, #old + math.min(over, 500) - 1)
  for _, id in ipairs(more) do old[#old + 1] = id end
end
for _, id in ipairs(old) do
  redis.call('ZREM', HISTORY, id)
  redis.call('DEL', k('alert', id))
end

return cjson.encode({raised = raised, cleared = cleared})
