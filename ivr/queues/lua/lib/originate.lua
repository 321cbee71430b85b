-- Click-to-dial (docs/call-control.md, "Click-to-dial"), used by scripts/originate.lua (the API's
-- POST /api/v1/calls) and scripts/case_task_accept.lua (an agent dials a case's follow-up task).
-- Appended after callbacks.lua (it picks the worker with CB.pick_worker).

-- A new outbound call record `cid` for agent `aid`, given to a live worker with a free call slot, which
-- rings the agent's phone first, then dials `number`. The agent is reserved at once (through
-- set_agent_state), so routing offers it nothing meanwhile, and the desktop pops (call.offered,
-- direction outbound) before its phone rings. The agent must be available; `reserved_ok`: or already
-- reserved for this (the caller checked what for). Nothing is written unless the call is placed.
-- Returns the worker, or nil and the error reply (agent.not_found, agent.not_available,
-- agent.no_phone, worker.unavailable, call.exists).
local function originate_call(cid, aid, number, caller_id, hotline, queue, by, reserved_ok)
  local akey = k('agent', aid)
  local a = redis.call('HMGET', akey, 'state', 'sip_uri')
  if not a[1] then return nil, redis.error_reply('agent.not_found no agent ' .. aid) end
  if a[1] ~= 'available' and not (reserved_ok and a[1] == 'reserved') then
    return nil, redis.error_reply('agent.not_available agent ' .. aid .. ' is ' .. a[1] .. ', not available')
  end
  if not a[2] or a[2] == '' then return nil, redis.error_reply('agent.no_phone agent ' .. aid .. ' has no phone') end
  if not R.phone_ready(aid) then
    return nil, redis.error_reply('agent.no_phone the phone of agent ' .. aid .. ' is not registered')
  end
  local w = CB.pick_worker()
  if not w then return nil, redis.error_reply('worker.unavailable no worker has a free call slot: retry shortly') end
  local ckey = k('call', cid)
  if redis.call('EXISTS', ckey) == 1 then return nil, redis.error_reply('call.exists ' .. cid) end
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
  return w
end
