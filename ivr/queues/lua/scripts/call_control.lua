-- Call control on a call with an agent: hold, mute, blind transfer, consult, conference, and live
-- supervision (monitor_*: a supervisor listens, whispers or barges; flags beside the state). The worker
-- (ivr/calls/session.py AgentCall) moves the media; this keeps the record, the agents' states, the
-- hold time and the events in step with it, in one atomic step per change.
-- A = call_id, op, by (who asked), a1, a2 (op arguments), wrapup seconds (for an agent released).
-- Returns JSON {changed = bool, ...}; errors: call.not_found, call.ended, call.wrong_state,
-- agent.not_found, agent.not_available, queue.no_agent_available.
local cid, op, by, a1, a2 = A[1], A[2], A[3], A[4] or '', A[5] or ''
local wrapup = tonumber(A[6] or '0') or 0
local ckey = k('call', cid)
local c = hgetall(ckey)
if not c.state then return redis.error_reply('call.not_found ' .. cid) end
if c.state == 'ended' then return redis.error_reply('call.ended ' .. cid) end

local function wrong(want)
  return redis.error_reply('call.wrong_state the call is ' .. c.state .. ', not ' .. want)
end
local function result(t) return cjson.encode(t) end
local consult = cjson.decode(c.consult or '{}')

local function start_hold()
  if c.held_at then return end
  redis.call('HSET', ckey, 'held_at', NOW)
  redis.call('HINCRBY', ckey, 'hold_count', 1)
  c.held_at = tostring(NOW)
end
local function end_hold()
  if not c.held_at then return 0 end
  local s = (NOW - tonumber(c.held_at)) / 1000.0
  redis.call('HINCRBYFLOAT', ckey, 'hold_s', s)
  redis.call('HDEL', ckey, 'held_at')
  c.held_at = nil
  return s
end
-- The current agent's part is over (transfer, consult completed, conference left): its handled time
-- counts for the queue, it goes to wrap-up; the next agent's part starts now.
local function release_current(reason)
  local aid = c.agent_id
  if aid and aid ~= '' then
    record_handled(c.queue, NOW - tonumber(c.agent_since or c.answered_at or NOW) + wrapup * 1000, hold_ms(c),
                   aid, wrapup * 1000)
    release_agent(cid, aid, wrapup, reason)
  end
  return aid or ''
end
local function add_transfer(ttype, target, mode, from)
  local list = cjson.decode(c.transfers or '[]')
  list[#list + 1] = {at = NOW, by = by, from_agent = from, target_type = ttype, target = target, mode = mode}
  redis.call('HSET', ckey, 'transfers', cjson.encode(list), 'transferred_from', from)
end
-- Reserve an available agent for this call (a named one, or one of a queue's); returns id, sip uri.
local function reserve(ttype, target, reason)
  local aid = target
  if ttype == 'queue' then
    aid = R.pick_for_queue(target)
    if not aid then return nil, 'queue.no_agent_available no agent of queue ' .. target .. ' is available' end
  elseif redis.call('EXISTS', k('agent', aid)) == 0 then
    return nil, 'agent.not_found ' .. aid
  end
  if redis.call('HGET', k('agent', aid), 'state') ~= 'available' or not R.phone_ready(aid) then
    return nil, 'agent.not_available agent ' .. aid .. ' is not available (or its phone is not registered)'
  end
  set_agent_state(aid, 'reserved', reason)
  redis.call('HSET', k('agent', aid), 'call_id', cid)
  return aid, redis.call('HGET', k('agent', aid), 'sip_uri') or ''
end
local function free_target(aid, talked)
  if not aid or aid == '' then return end
  if talked then release_agent(cid, aid, wrapup, 'consult') return end
  if redis.call('HGET', k('agent', aid), 'call_id') == cid then
    set_agent_state(aid, 'available', 'consult_ended')
    match_agent(aid)
  end
end

if op == 'hold' then
  if c.state == 'held' then return result({changed = false}) end
  if c.state ~= 'connected' then return wrong('connected') end
  start_hold()
  set_call_state(ckey, 'held')
  emit('call.held', {call_id = cid, agent_id = c.agent_id or '', by = by})
  return result({changed = true})

elseif op == 'resume' then
  if c.state == 'connected' then return result({changed = false}) end
  if c.state ~= 'held' then return wrong('held') end
  local s = end_hold()
  set_call_state(ckey, 'connected')
  emit('call.resumed', {call_id = cid, agent_id = c.agent_id or '', by = by, held_s = s})
  return result({changed = true})

elseif op == 'mute' or op == 'unmute' then
  if not (c.state == 'connected' or c.state == 'held' or c.state == 'consulting' or c.state == 'conferenced') then
    return wrong('with an agent')
  end
  local on = op == 'mute'
  if (c.muted == '1') == on then return result({changed = false}) end
  if on then redis.call('HSET', ckey, 'muted', '1') else redis.call('HDEL', ckey, 'muted') end
  if on then
    emit('call.muted', {call_id = cid, agent_id = c.agent_id or '', by = by})
  else
    emit('call.unmuted', {call_id = cid, agent_id = c.agent_id or '', by = by})
  end
  return result({changed = true})

elseif op == 'transfer' then
  -- a1 = target type (queue, agent, number), a2 = the queue, agent id or number
  if c.state ~= 'connected' and c.state ~= 'held' then return wrong('connected or held') end
  if a1 == 'agent' and a2 == c.agent_id then
    return redis.error_reply('agent.not_available the call is already with agent ' .. a2)
  end
  local aid
  if a1 == 'agent' then
    if redis.call('EXISTS', k('agent', a2)) == 0 then return redis.error_reply('agent.not_found ' .. a2) end
    if redis.call('HGET', k('agent', a2), 'state') ~= 'available' or not R.phone_ready(a2) then
      return redis.error_reply('agent.not_available agent ' .. a2 .. ' is not available (or its phone is not registered)')
    end
    aid = a2
  end
  end_hold()
  local from = release_current('transferred')
  add_transfer(a1, a2, 'blind', from)
  set_call_state(ckey, 'transferring', 'agent_id', '')
  redis.call('HDEL', ckey, 'muted')
  emit('call.transferred', {call_id = cid, agent_id = from, from_agent = from, by = by, target_type = a1, target = a2,
                            mode = 'blind'})
  if aid then
    -- the named agent gets the offer now (the worker rings it as for a queue; not answered: the
    -- caller goes back to the head of its queue, as for any failed offer)
    local o = offer(cid, aid, c.queue or '')
    return result({changed = true, agent_id = aid, offer = o})
  end
  return result({changed = true})

elseif op == 'consult' then
  if c.state ~= 'connected' and c.state ~= 'held' then return wrong('connected or held') end
  local aid, uri = '', ''
  if a1 == 'agent' or a1 == 'queue' then
    if a1 == 'agent' and a2 == c.agent_id then
      return redis.error_reply('agent.not_available an agent cannot consult itself')
    end
    aid, uri = reserve(a1, a2, 'consult')
    if not aid then return redis.error_reply(uri) end
  end
  start_hold()
  set_call_state(ckey, 'consulting', 'consult', cjson.encode({target_type = a1, target = a2, agent_id = aid,
                                                             state = 'ringing', by = by, talking_to = 'target'}))
  emit('call.consult_started', {call_id = cid, agent_id = c.agent_id or '', target_type = a1, target = a2,
                                target_agent_id = aid})
  if aid ~= '' then
    emit('call.consult_offered', {call_id = cid, agent_id = aid, from_agent = c.agent_id or '',
                                  ani = c.ani or '', queue = c.queue or ''}, {journey = c.journey or '{}'})
  end
  return result({changed = true, agent_id = aid, sip_uri = uri})

elseif op == 'consult_answered' then
  if c.state ~= 'consulting' then return wrong('consulting') end
  consult.state = 'talking'
  redis.call('HSET', ckey, 'consult', cjson.encode(consult))
  if consult.agent_id ~= '' then set_agent_state(consult.agent_id, 'oncall', 'consult') end
  emit('call.consult_answered', {call_id = cid, agent_id = c.agent_id or '', target_agent_id = consult.agent_id})
  return result({changed = true})

elseif op == 'consult_swap' then
  -- a1 = who the agent talks to now: caller or target
  if c.state ~= 'consulting' or consult.state ~= 'talking' then return wrong('consulting with the target answered') end
  if consult.talking_to == a1 then return result({changed = false}) end
  consult.talking_to = a1
  if a1 == 'caller' then end_hold() else start_hold() end
  redis.call('HSET', ckey, 'consult', cjson.encode(consult))
  emit('call.consult_swapped', {call_id = cid, agent_id = c.agent_id or '', talking_to = a1})
  return result({changed = true})

elseif op == 'consult_cancel' or op == 'consult_failed' then
  -- a1 = the reason (consult_failed: no_answer, rejected, hung_up...)
  if c.state ~= 'consulting' then return wrong('consulting') end
  free_target(consult.agent_id, consult.state == 'talking')
  end_hold()
  set_call_state(ckey, 'connected')
  redis.call('HDEL', ckey, 'consult')
  if op == 'consult_cancel' then
    emit('call.consult_cancelled', {call_id = cid, agent_id = c.agent_id or '', by = by,
                                    target_agent_id = consult.agent_id or ''})
  else
    emit('call.consult_failed', {call_id = cid, agent_id = c.agent_id or '', reason = a1,
                                 target_agent_id = consult.agent_id or ''})
  end
  return result({changed = true})

elseif op == 'consult_complete' then
  if c.state ~= 'consulting' or consult.state ~= 'talking' then return wrong('consulting with the target answered') end
  end_hold()
  local from = release_current('transferred')
  add_transfer(consult.target_type, consult.target, 'consult', from)
  redis.call('HDEL', ckey, 'consult', 'muted')
  if consult.agent_id ~= '' then
    set_call_state(ckey, 'connected', 'agent_id', consult.agent_id, 'agent_since', NOW)
  else
    set_call_state(ckey, 'transferring', 'agent_id', '')
  end
  emit('call.consult_completed', {call_id = cid, agent_id = from, by = by, target_agent_id = consult.agent_id})
  emit('call.transferred', {call_id = cid, agent_id = from, from_agent = from, by = by, target_type = consult.target_type,
                            target = consult.target, mode = 'consult'})
  return result({changed = true, agent_id = consult.agent_id})

elseif op == 'conference' then
  if c.state ~= 'consulting' or consult.state ~= 'talking' then return wrong('consulting with the target answered') end
  end_hold()
  local parties = {c.agent_id or ''}
  parties[2] = consult.agent_id ~= '' and consult.agent_id or consult.target
  set_call_state(ckey, 'conferenced', 'conference', cjson.encode(parties))
  emit('call.conferenced', {call_id = cid, agent_id = c.agent_id or '', agents = parties})
  return result({changed = true})

elseif op == 'conference_leave' then
  -- a1 = the agent who leaves (the call's agent or the consulted one)
  if c.state ~= 'conferenced' then return wrong('conferenced') end
  if a1 == consult.agent_id then  -- the consulted agent, or ('' = '') the outside number hung up
    free_target(a1, true)
    set_call_state(ckey, 'connected')
  elseif a1 == c.agent_id then
    release_current('left_conference')
    if consult.agent_id ~= '' then
      set_call_state(ckey, 'connected', 'agent_id', consult.agent_id, 'agent_since', NOW)
    else
      set_call_state(ckey, 'transferring', 'agent_id', '')
    end
    add_transfer(consult.target_type, consult.target, 'conference', a1)
  else
    return redis.error_reply('agent.not_found agent ' .. a1 .. ' is not in this conference')
  end
  local ok, parties = pcall(cjson.decode, c.conference or '[]')
  local remaining = {}  -- who goes on (their desktops see the event too)
  if ok and type(parties) == 'table' then
    for _, p in ipairs(parties) do if p ~= a1 then remaining[#remaining + 1] = p end end
  end
  redis.call('HDEL', ckey, 'consult', 'conference', 'muted')
  emit('call.conference_left', {call_id = cid, agent_id = a1, by = by, agents = remaining})
  return result({changed = true, agent_id = redis.call('HGET', ckey, 'agent_id') or ''})
end

-- live supervision: `monitored` (listen/whisper/barge) and `monitor` (JSON: supervisor, mode, state
-- ringing/talking, since, notice) beside the state. The agent's desktop sees call.monitor only while
-- it may know (whisper and barge; listen when notify_agent_on_listen), and the event that clears it.
local MONITOR_MODES = {listen = true, whisper = true, barge = true}
local monitor = cjson.decode(c.monitor or '{}')
local function notice_of(mode, notify)
  if mode == 'whisper' then return 'coached' end
  if mode == 'barge' then return 'barged' end
  if mode == 'listen' and notify then return 'listened' end
  return ''
end
local function emit_monitor(mode, notice, before, reason)
  emit('call.monitor', {call_id = cid, agent_id = c.agent_id or '', supervisor = monitor.by or by, mode = mode,
                        notice = notice, agent_sees = notice ~= '' or (before or '') ~= '', reason = reason or ''})
end

if op == 'monitor_start' then
  -- a1 = mode, a2 = '1' when the agent is told of a listen (supervision.notify_agent_on_listen)
  if not MONITOR_MODES[a1] then return redis.error_reply('request.invalid unknown monitor mode ' .. a1) end
  if not (c.state == 'connected' or c.state == 'held' or c.state == 'consulting' or c.state == 'conferenced')
      or (c.agent_id or '') == '' then
    return wrong('with an agent')
  end
  if c.monitor then return redis.error_reply('monitor.active supervisor ' .. (monitor.by or '?') .. ' is already on this call') end
  monitor = {by = by, mode = a1, state = 'ringing', since = NOW, notify = a2 == '1', notice = ''}
  redis.call('HSET', ckey, 'monitored', a1, 'monitor', cjson.encode(monitor))
  return result({changed = true})

elseif op == 'monitor_answered' then
  if not c.monitor then return redis.error_reply('monitor.none no supervisor is on this call') end
  if monitor.state == 'talking' then return result({changed = false}) end
  local before = monitor.notice
  monitor.state, monitor.notice = 'talking', notice_of(monitor.mode, monitor.notify)
  redis.call('HSET', ckey, 'monitor', cjson.encode(monitor))
  emit_monitor(monitor.mode, monitor.notice, before)
  return result({changed = true})

elseif op == 'monitor_change' then
  -- a1 = the new mode
  if not MONITOR_MODES[a1] then return redis.error_reply('request.invalid unknown monitor mode ' .. a1) end
  if not c.monitor then return redis.error_reply('monitor.none no supervisor is on this call') end
  if monitor.mode == a1 then return result({changed = false}) end
  local before = monitor.notice
  monitor.mode = a1
  if monitor.state == 'talking' then monitor.notice = notice_of(a1, monitor.notify) end
  redis.call('HSET', ckey, 'monitored', a1, 'monitor', cjson.encode(monitor))
  if monitor.state == 'talking' then emit_monitor(a1, monitor.notice, before) end
  return result({changed = true})

elseif op == 'monitor_stop' then
  -- a1 = why: requested, supervisor_hangup, no_answer, unreachable, agent_left, call_ended
  if not c.monitor then return result({changed = false}) end
  redis.call('HDEL', ckey, 'monitored', 'monitor')
  emit_monitor('stopped', '', monitor.notice, a1)
  return result({changed = true, supervisor = monitor.by or '', talked = monitor.state == 'talking'})
end
return redis.error_reply('request.invalid unknown call control op ' .. tostring(op))
