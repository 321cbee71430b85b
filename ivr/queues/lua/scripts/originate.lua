-- Click-to-dial (docs/call-control.md, "Click-to-dial"): POST /api/v1/calls places a call for an
-- available agent (originate_call in lib/originate.lua), at most once per idempotency key.
-- A = call_id, agent_id, number, caller_id, hotline, queue, by, idempotency digest ('' = none),
--     request digest, idempotency ttl seconds
-- Returns {'new' | 'existing', call_id, state, worker}; errors agent.not_found, agent.not_available,
-- agent.no_phone, worker.unavailable, idempotency.mismatch (the key was used for another request).
local cid, aid, number, caller_id, hotline, queue, by = A[1], A[2], A[3], A[4], A[5], A[6], A[7]
local idem, req, idem_ttl = A[8], A[9], tonumber(A[10])
local ikey = nil
if idem ~= '' then
  ikey = k('originate', idem)
  local prev = redis.call('GET', ikey)
  if prev then
    local prev_cid, prev_req = string.match(prev, '^(%S+) (%S+)$')
    if prev_req ~= req then
      return redis.error_reply('idempotency.mismatch the Idempotency-Key was used for another request')
    end
    local st = redis.call('HMGET', k('call', prev_cid), 'state', 'worker')
    return {'existing', prev_cid, st[1] or 'ended', st[2] or ''}
  end
end
local w, err = originate_call(cid, aid, number, caller_id, hotline, queue, by, false)
if not w then return err end
if ikey then redis.call('SET', ikey, cid .. ' ' .. req, 'EX', idem_ttl) end
return {'new', cid, 'dialing', w}
