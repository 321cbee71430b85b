-- The customer of callback `cid` was not reached for offer `offer_id` (no answer, busy, no key, the
-- worker had no free slot...). The callback waits `retry_after_s` out of the routing indexes, then
-- competes again at its place; after `max_attempts` dialled attempts it fails (callback.failed), and
-- a caller who meanwhile called again and took its place ends it (callback.cancelled). The reserved
-- agent is available again (call.offer_failed) and matched at once.
-- A = call_id, offer_id, reason, retry_after_s, max_attempts. Returns 'retry', 'failed' or 'superseded'.
local cid, offer_id, reason = A[1], A[2], A[3]
local after, max = tonumber(A[4]), tonumber(A[5])
local ckey = k('call', cid)
if redis.call('HGET', ckey, 'offer_id') ~= offer_id then return redis.error_reply('offer.stale ' .. offer_id) end
local c = hgetall(ckey)
local attempts = tonumber(c.attempts or 0)
emit('call.offer_failed', {call_id = cid, offer_id = offer_id, agent_id = c.agent_id or '',
                           reason = 'callback_' .. reason})
local result = 'retry'
if c.superseded_by then
  result = 'superseded'
  CB.end_record(cid, 'superseded', reason)
  CB.close(cid, 'superseded', tonumber(c.ttl))
  emit('callback.cancelled', {callback_id = cid, call_id = c.origin_call_id or '', queue = c.queue or '',
                              by = 'redial', superseded_by = c.superseded_by})
elseif attempts >= max then
  result = 'failed'
  CB.end_record(cid, 'failed', reason)
  CB.close(cid, 'failed', tonumber(c.ttl))
  emit('callback.failed', {callback_id = cid, call_id = cid, origin_call_id = c.origin_call_id or '',
                           queue = c.queue or '', reason = reason, attempts = attempts})
else
  CB.schedule(cid, math.floor(after * 1000))
  emit('callback.retry', {callback_id = cid, call_id = cid, queue = c.queue or '', reason = reason,
                          attempt = attempts, retry_in_s = after})
end
if c.agent_id and redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
  set_agent_state(c.agent_id, 'available', 'callback_' .. reason)
  match_agent(c.agent_id)
end
return result
