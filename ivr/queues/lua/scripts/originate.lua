-- Click-to-dial (docs/call-control.md, "Click-to-dial"): a new outbound call record for agent `aid`,
-- given to a live worker with a free call slot, which rings the agent's phone first, then dials the
-- customer. The agent is reserved at once (through set_agent_state), so routing offers it nothing
-- meanwhile, and the desktop pops (call.offered, direction outbound) before its phone rings.
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
local akey = k('agent', aid)
local a = redis.call('HMGET', akey, 'state', 'sip_uri')
if not a[1] then return redis.error_reply('agent.not_found no agent ' .. aid) end
if a[1] ~= 'available' then
  return redis.error_reply('agent.not_available agent ' .. aid .. ' is ' .. a[1] .. ', not available')
end
if not a[2] or a[2] == '' then return redis.error_reply('agent.no_phone agent ' .. aid .. ' has no phone') end
if not R.phone_ready(aid) then
  return redis.error_reply('agent.no_phone the phone of agent ' .. aid .. ' is not registered')
end
local w = CB.pick_worker()
if not w then return redis.error_reply('worker.unavailable no worker has a free call slot: retry shortly') end
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 1 then return redis.error_reply('call.exists ' .. cid) end
local offer_id = cid .. '.1'
create_call(ckey, 'dialing', 'call_id', cid, 'kind', 'outbound', 'direction', 'outbound', 'worker', w,
            'ani', number, 'dnis', caller_id, 'number', number, 'caller_id', caller_id, 'hotline', hotline,
            'language', '', 'agent_id', aid, 'offer_id', offer_id, 'offers', 1, 'offered_at', NOW,
            'started_at', NOW, 'originated_by', by, 'journey', '{"steps":[]}')
if queue ~= '' then
  redis.call('HSET', ckey, 'queue', queue)
  redis.call('HSETNX', k('queues'), queue, queue)  -- listed for its statistics (the first enqueue sets its skill)
  redis.call('HINCRBY', stats_key(queue), 'outbound', 1)
end
set_agent_state(aid, 'reserved', 'outbound')
redis.call('HSET', akey, 'call_id', cid, 'offer_id', offer_id)
redis.call('SADD', k('calls', 'active'), cid)
redis.call('SADD', k('worker', w, 'calls'), cid)
local msg = {type = 'offer', kind = 'outbound', dial = true, offer_id = offer_id, call_id = cid, agent_id = aid,
             sip_uri = a[2], queue = queue, number = number, hotline = hotline, caller_id = caller_id}
redis.call('RPUSH', k('worker', w, 'inbox'), cjson.encode(msg))
emit('call.started', {call_id = cid, worker = w, ani = number, dnis = caller_id, hotline = hotline, language = '',
                      direction = 'outbound'})
emit('call.offered', {call_id = cid, offer_id = offer_id, agent_id = aid, queue = queue, priority = 0,
                      waited_s = 0, ani = number, dnis = caller_id, hotline = hotline, language = '',
                      direction = 'outbound'}, {journey = '{}'})
if ikey then redis.call('SET', ikey, cid .. ' ' .. req, 'EX', idem_ttl) end
return {'new', cid, 'dialing', w}
