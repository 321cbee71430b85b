-- Automated outbound calls (docs/call-control.md, "Automated calls"): the hotline dials a customer
-- and, when they answer, runs a dial plan with them (a follow-up survey, a campaign's message), as if
-- they had called in: from there on the record is an ordinary call in the plan (state `ivr`), which
-- may queue it for an agent. No agent is reserved while it rings.
-- Appended after originate.lua (it picks the worker with CB.pick_worker). Scripts: dialout_start,
-- dialout_answered, dialout_failed; a dialout that was answered ends through end_call (finish_call).
--
-- Who asked for the call (its `purpose`: `followup` for a case's follow-up, `campaign` for a
-- campaign's record) learns how it went through its hook in DO.owners, registered by its own library
-- (cases.lua, campaigns.lua), called in the same script as the change:
--   DO.owners[purpose](event, cid, c, outcome, reason)
--   event 'answered'    - the customer answered; the plan runs now (never dial this attempt again);
--   event 'not_reached' - busy / no_answer / failed (reason says why: customer_busy, worker_full,
--                         worker_lost when its worker died before the answer, ...): retry or give up;
--   event 'ended'       - an answered call is over (outcome completed, or lost: the worker died).
-- `c` is the call record as it was before the change (its fields: case_id, campaign, record, ...).
-- DO is declared by the prelude (finish_call tells DO.ended).

local DIALOUT_PURPOSES = {followup = true, campaign = true, test = true}
local DIALOUT_VARIABLES_MAX = 8192
-- the offer fields of the record (kept on it for the reaper and the owner hooks)
local DIALOUT_FIELDS = {'case_id', 'campaign', 'record'}

local function dialout_notify(event, cid, c, outcome, reason)
  local hook = DO.owners[c.purpose or '']
  if hook then hook(event, cid, c, outcome, reason) end
end

-- A new automated call `cid`: spec = {number, caller_id, hotline, plan, language, variables (a JSON
-- object of strings, seeded into the plan), purpose, ring_s, queue, case_id, campaign, record}.
-- It is given to the live worker with the most free call slots, which dials `number` and, on the
-- answer, runs plan `plan` (a plan id: its file name without .yaml). Returns the worker, or nil and
-- an error reply (worker.unavailable, call.exists, request.invalid). Nothing is written unless the
-- call is placed.
function DO.start(cid, spec)
  if not DIALOUT_PURPOSES[spec.purpose or ''] then
    return nil, redis.error_reply('request.invalid unknown dialout purpose ' .. tostring(spec.purpose))
  end
  if type(spec.number) ~= 'string' or not string.match(spec.number, '^%+?[0-9*#]+$') or #spec.number > 32 then
    return nil, redis.error_reply('request.invalid the number to dial must be 1 to 32 digits')
  end
  if type(spec.plan) ~= 'string' or not string.match(spec.plan, '^[A-Za-z0-9][A-Za-z0-9_.-]*$') or #spec.plan > 120 then
    return nil, redis.error_reply('request.invalid the plan must be a plan id')
  end
  local variables = spec.variables or '{}'
  if #variables > DIALOUT_VARIABLES_MAX then
    return nil, redis.error_reply('request.invalid the variables exceed ' .. DIALOUT_VARIABLES_MAX .. ' bytes')
  end
  local ckey = k('call', cid)
  local cur = redis.call('HGET', ckey, 'state')
  if cur and cur ~= 'ended' then return nil, redis.error_reply('call.exists ' .. cid) end
  local w = CB.pick_worker()
  if not w then return nil, redis.error_reply('worker.unavailable no worker has a free call slot: retry shortly') end
  local offer_id = cid .. '.d'
  local number, caller_id, hotline = spec.number, spec.caller_id or '', spec.hotline or ''
  create_call(ckey, 'dialing', 'call_id', cid, 'kind', 'dialout', 'direction', 'outbound', 'worker', w,
              'ani', number, 'dnis', caller_id, 'number', number, 'caller_id', caller_id, 'hotline', hotline,
              'language', spec.language or '', 'offer_id', offer_id, 'started_at', NOW, 'plan', spec.plan,
              'purpose', spec.purpose, 'journey', '{"steps":[]}')
  for _, f in ipairs(DIALOUT_FIELDS) do
    if (spec[f] or '') ~= '' then redis.call('HSET', ckey, f, spec[f]) end
  end
  local queue = spec.queue or ''
  if queue ~= '' then
    redis.call('HSET', ckey, 'queue', queue)
    redis.call('HSETNX', k('queues'), queue, queue)
    redis.call('HINCRBY', stats_key(queue), 'outbound', 1)
  end
  redis.call('SADD', k('calls', 'active'), cid)
  redis.call('SADD', k('worker', w, 'calls'), cid)
  local msg = {type = 'offer', kind = 'dialout', dial = true, offer_id = offer_id, call_id = cid, agent_id = '',
               sip_uri = '', queue = queue, number = number, hotline = hotline, caller_id = caller_id,
               language = spec.language or '', plan = spec.plan, variables = variables,
               ring_s = tonumber(spec.ring_s) or 0}
  redis.call('RPUSH', k('worker', w, 'inbox'), cjson.encode(msg))
  emit('call.started', {call_id = cid, worker = w, ani = number, dnis = caller_id, hotline = hotline,
                        language = spec.language or '', direction = 'outbound'})
  return w
end

-- The customer answered: the call enters its plan (state ivr). Returns false when the offer is stale.
function DO.answered(cid, offer_id)
  local ckey = k('call', cid)
  local c = hgetall(ckey)
  if c.offer_id ~= offer_id or c.kind ~= 'dialout' then return false end
  if c.state ~= 'dialing' then return c.state == 'ivr' end
  set_call_state(ckey, 'ivr', 'answered_at', NOW)
  if (c.queue or '') ~= '' then redis.call('HINCRBY', stats_key(c.queue), 'outbound_answered', 1) end
  emit('call.answered', {call_id = cid, offer_id = offer_id, agent_id = '',
                         waited_s = (NOW - tonumber(c.started_at or NOW)) / 1000.0})
  dialout_notify('answered', cid, c, 'answered', '')
  return true
end

-- Not reached (busy, no answer, refused, no slot on the worker after all): the record ends with
-- `outcome` and its owner decides about another attempt. False when it was not dialing.
function DO.not_reached(cid, offer_id, outcome, reason, ttl)
  local ckey = k('call', cid)
  local c = hgetall(ckey)
  if c.offer_id ~= offer_id or c.kind ~= 'dialout' or c.state ~= 'dialing' then return false end
  if (c.queue or '') ~= '' then redis.call('HINCRBY', stats_key(c.queue), 'outbound_failed', 1) end
  set_call_state(ckey, 'ended', 'ended_at', NOW, 'end_reason', reason, 'outcome', outcome)
  redis.call('SREM', k('calls', 'active'), cid)
  redis.call('SREM', k('worker', c.worker, 'calls'), cid)
  redis.call('EXPIRE', ckey, ttl)
  emit('call.ended', {call_id = cid, outcome = outcome, reason = reason, agent_id = '', queue = c.queue or '',
                      duration_s = (NOW - tonumber(c.started_at or NOW)) / 1000.0})
  dialout_notify('not_reached', cid, c, outcome, reason)
  return outcome
end

-- finish_call ended dialout record `c` with `outcome` (its worker died when `lost`): before the
-- answer it is an attempt that did not reach the customer; after it, the call is over.
function DO.ended(cid, c, outcome, reason, lost)
  if c.kind ~= 'dialout' then return end
  if c.state == 'dialing' then
    dialout_notify('not_reached', cid, c, 'failed', lost and 'worker_lost' or reason)
  else
    dialout_notify('ended', cid, c, outcome, reason)
  end
end
