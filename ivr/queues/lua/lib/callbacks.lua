-- Callbacks (virtual hold) and redial resume; appended after routing.lua, called through the table CB
-- the prelude declares. See docs/dialplans.md ("callback") for the whole story.
--
-- A booked callback has, besides its booking hash (callback:<id>), its own call record call:<id>
-- (kind = callback, the same id) carrying what routing needs: queue, route, priority and queued_at
-- such that its waiting score is the place the caller kept. States of that record:
--   booked     the caller is still on the line (nothing dials them while they are);
--   queued     it competes for agents exactly like a waiting caller at its place (queue and route ZSETs);
--   offered    an agent is reserved and a worker (chosen here: live, with a free slot) got the offer:
--              it dials the customer, asks for the confirmation key, then rings the agent;
--   scheduled  waiting for its next attempt (callbacks:due), out of every routing index;
--   connected / ivr / ended   as for any call (finish_call).

local CB_DEFER_MS = 2000  -- no live worker with a free slot: compete again this much later
local CB_DUE_BATCH = 20   -- due callbacks housekeeping puts back per run
local CB_TTL = 7 * 24 * 3600

local function cb_ani_ok(ani)
  return ani ~= nil and ani ~= false and ani ~= '' and ani ~= 'anonymous' and ani ~= 'unknown'
end
CB.ani_ok = cb_ani_ok

-- The live worker (heartbeat present) with the most free call slots (slots reported with its
-- heartbeat minus the calls it holds), ties to the smallest name; nil when none has a free slot.
function CB.pick_worker()
  local best, free = nil, 0
  for _, w in ipairs(redis.call('SMEMBERS', k('workers'))) do
    local slots = tonumber(redis.call('GET', k('worker', w, 'slots')) or '0') or 0
    if slots > 0 and redis.call('EXISTS', k('worker', w, 'alive')) == 1 then
      local f = slots - redis.call('SCARD', k('worker', w, 'calls'))
      if f > free or (f == free and f > 0 and w < best) then best, free = w, f end
    end
  end
  return best
end

-- Give callback record `c` (id `cid`, being offered) to a worker that can dial it, unless it has one
-- already (the customer is on the line there: re-offers after a failed agent go to the same worker).
-- False when no worker can: the callback waits CB_DEFER_MS out of the routing indexes.
function CB.assign_worker(cid, c)
  if c.worker and c.worker ~= '' then return true end
  local w = CB.pick_worker()
  if not w then
    CB.schedule(cid, CB_DEFER_MS)
    return false
  end
  c.worker = w
  c.dial = true
  redis.call('HSET', k('call', cid), 'worker', w)
  redis.call('SADD', k('worker', w, 'calls'), cid)
  redis.call('SADD', k('calls', 'active'), cid)
  return true
end

-- The offer message fields of a callback (what the worker needs to dial); `dial` is true when the
-- worker is to call the customer (false: a re-offer while the customer waits on that worker).
function CB.offer_fields(msg, c)
  msg.kind = 'callback'
  msg.dial = c.dial == true
  msg.callback_id = c.callback_id or c.call_id
  msg.number = c.number or ''
  msg.hotline = c.hotline or ''
  msg.language = c.language or ''
end

local function cb_detach(cid, c)
  if c.worker and c.worker ~= '' then redis.call('SREM', k('worker', c.worker, 'calls'), cid) end
  redis.call('SREM', k('calls', 'active'), cid)
  redis.call('HDEL', k('call', cid), 'worker', 'agent_id', 'offer_id')
end

-- Out of every routing index and off its worker; competes again in `ms` (state scheduled).
function CB.schedule(cid, ms)
  local ckey = k('call', cid)
  R.unqueue(cid)
  cb_detach(cid, hgetall(ckey))
  set_call_state(ckey, 'scheduled', 'due_at', NOW + ms)
  redis.call('ZADD', k('callbacks', 'due'), NOW + ms, cid)
  redis.call('HSET', k('callback', cid), 'state', 'pending')
end

-- Compete for agents at its place now (state queued); returns the offer or false.
function CB.queue(cid)
  local ckey = k('call', cid)
  redis.call('ZREM', k('callbacks', 'due'), cid)
  set_call_state(ckey, 'queued')
  redis.call('HDEL', ckey, 'due_at')
  R.queue_call(cid)
  return R.match_call(cid)
end

-- End the record of a callback that is not on any worker's line (cancelled, failed, superseded).
function CB.end_record(cid, outcome, reason)
  local ckey = k('call', cid)
  local c = hgetall(ckey)
  if not c.state or c.state == 'ended' then return end  -- gone, or ended already (a late report)
  R.unqueue(cid)
  cb_detach(cid, c)
  set_call_state(ckey, 'ended', 'ended_at', NOW, 'end_reason', reason, 'outcome', outcome)
  index_call(cid, c, {})  -- in the call list (GET /api/v1/calls) like any ended call
  redis.call('EXPIRE', ckey, tonumber(c.ttl or CB_TTL))
end

-- The callback is over for good: `state` (done, failed, cancelled, superseded, abandoned, lost) on
-- its booking hash, out of the pending list, the due list and the redial index.
function CB.close(cid, state, ttl)
  local key = k('callback', cid)
  local f = redis.call('HMGET', key, 'queue', 'ani')
  redis.call('ZREM', k('callbacks', 'due'), cid)
  if f[1] then
    redis.call('ZREM', k('queue', f[1], 'callbacks'), cid)
    if cb_ani_ok(f[2]) and redis.call('GET', k('queue', f[1], 'callback_ani', f[2])) == cid then
      redis.call('DEL', k('queue', f[1], 'callback_ani', f[2]))
    end
  end
  redis.call('HSET', key, 'state', state, 'ended_at', NOW)
  redis.call('EXPIRE', key, tonumber(ttl) or CB_TTL)
end

-- Call `c` (its hash as it was) ended: the callback it booked, still waiting for the caller to hang
-- up, competes for agents at its place from now on.
function CB.activate(c)
  local id = c.callback_id
  if not id or id == c.call_id then return end
  local f = redis.call('HMGET', k('call', id), 'state', 'queue', 'priority', 'queued_at')
  if f[1] ~= 'booked' then return end
  emit('callback.queued', {callback_id = id, call_id = id, origin_call_id = c.call_id or '', queue = f[2],
                           place = wait_score(f[3], f[4])})
  CB.queue(id)
end

-- finish_call of a callback record whose worker died before the customer talked to an agent (being
-- dialled, or confirmed and waiting): not lost, tried again at once, attempt not counted. Returns
-- the outcome, or nil for records finish_call handles itself.
function CB.on_lost(cid, c)
  if c.kind ~= 'callback' or (c.state ~= 'offered' and c.state ~= 'queued') then return nil end
  CB.schedule(cid, 0)
  emit('callback.retry', {callback_id = cid, call_id = cid, queue = c.queue or '', reason = 'worker_lost',
                          attempt = tonumber(c.attempts or 0), retry_in_s = 0})
  if c.state == 'offered' and c.agent_id and redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
    set_agent_state(c.agent_id, 'available', 'call_lost')
    match_agent(c.agent_id)
  end
  return 'requeued'
end

-- A caller hung up while waiting (queued or offered): remember its place for `resume_s` seconds.
function CB.remember_abandon(c, resume_s)
  if not resume_s or resume_s <= 0 or c.kind == 'callback' or not c.queue or not cb_ani_ok(c.ani) then return end
  local key = k('queue', c.queue, 'resume', c.ani)
  redis.call('HSET', key, 'priority', c.priority or 0, 'queued_at', c.queued_at or NOW, 'call_id', c.call_id or '')
  redis.call('EXPIRE', key, resume_s)
end

-- Caller `ani` (call `cid`) is being queued in `queue` at priority `prio`: the place it had when it
-- hung up there within the resume window, or the place of its open callback in that queue (the live
-- call takes it; the callback is cancelled, or ends at its attempt's outcome if it is being dialled),
-- whichever is better - when better than now. Returns priority, queued_at, {from, previous} or nil.
function CB.resume(cid, queue, prio, ani)
  if not cb_ani_ok(ani) then return nil end
  local best = nil
  local rkey = k('queue', queue, 'resume', ani)
  local r = redis.call('HMGET', rkey, 'priority', 'queued_at', 'call_id')
  if r[2] then
    best = {prio = tonumber(r[1]) or 0, at = tonumber(r[2]), from = 'abandon', previous = r[3] or ''}
    redis.call('DEL', rkey)
  end
  local cbid = redis.call('GET', k('queue', queue, 'callback_ani', ani))
  if cbid and cbid ~= cid then
    local f = redis.call('HMGET', k('call', cbid), 'state', 'priority', 'queued_at', 'origin_call_id')
    local st = f[1]
    if st == 'booked' or st == 'scheduled' or st == 'queued' or st == 'offered' then
      local cand = {prio = tonumber(f[2]) or 0, at = tonumber(f[3]), from = 'callback', previous = cbid}
      if best == nil or wait_score(cand.prio, cand.at) < wait_score(best.prio, best.at) then best = cand end
      if st == 'offered' then
        redis.call('HSET', k('call', cbid), 'superseded_by', cid)
      else
        CB.end_record(cbid, 'superseded', 'redial')
        CB.close(cbid, 'superseded', redis.call('HGET', k('call', cbid), 'ttl'))
        emit('callback.cancelled', {callback_id = cbid, call_id = f[4] or '', queue = queue, by = 'redial',
                                    superseded_by = cid})
      end
    end
  end
  if best == nil then return nil end
  local p, at = math.max(prio, best.prio), math.min(best.at, NOW)
  if wait_score(p, at) >= wait_score(prio, NOW) then return nil end
  return p, at, best
end

-- Scheduled callbacks whose time came compete for agents again (at most `limit`). Returns the count.
function CB.release_due(limit)
  local n = 0
  for _, cid in ipairs(redis.call('ZRANGEBYSCORE', k('callbacks', 'due'), '-inf', NOW, 'LIMIT', 0, limit)) do
    redis.call('ZREM', k('callbacks', 'due'), cid)
    if redis.call('HGET', k('call', cid), 'state') == 'scheduled' then
      CB.queue(cid)
      n = n + 1
    end
  end
  return n
end
