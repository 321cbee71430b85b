-- Shared helpers, prepended to every script (see ivr/queues/scripts.py).
-- ARGV[1] = key prefix, ARGV[2] = event stream max length, ARGV[3] = statistics settings (JSON, see
-- stats_key); script arguments start at ARGV[4].
-- Key names are built here from the prefix, mirroring ivr/queues/keys.py (single Redis, not Cluster).
local P = ARGV[1]
local MAXLEN = tonumber(ARGV[2])
local STATS = cjson.decode(ARGV[3])
local A = {}
for i = 4, #ARGV do A[#A + 1] = ARGV[i] end

local function k(...) return P .. ':' .. table.concat({...}, ':') end

-- Skill routing helpers (indexes, matching, escalation), defined in routing.lua which follows.
local R = {}
-- Callbacks and redial resume (callbacks.lua, appended after routing.lua).
local CB = {}
-- Automated outbound calls that run a dial plan (dialout.lua, after originate.lua).
local DO = {owners = {}}
-- Complaint cases and their follow-up tasks (cases.lua, the last library).
local CS = {}
-- Outbound campaigns: pacing, records, the dialler's tick (campaigns.lua, after cases.lua).
local CP = {}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Append one event; `raw` holds fields that are already JSON (e.g. the call journey). Its fields are
-- those of its class in ivr/core/event_catalogue.py (a unit test checks every emit); `v` is the
-- catalogue's version.
local EVENT_VERSION = 2
local function emit(etype, data, raw)
  data.ts = NOW
  data.v = EVENT_VERSION
  local args = {'XADD', k('events'), 'MAXLEN', '~', MAXLEN, '*', 'type', etype, 'data', cjson.encode(data)}
  if raw then for f, v in pairs(raw) do args[#args + 1] = f; args[#args + 1] = v end end
  return redis.call(unpack(args))
end

local function agent_skills(aid)
  return cjson.decode(redis.call('HGET', k('agent', aid), 'skills') or '{}')
end

-- Interval statistics (ivr/queues/stats.py): counters of each queue in one hash per interval
-- (STATS.interval_s long, aligned on the epoch), kept STATS.keep_s, indexed by a ZSET of interval
-- starts. A counter goes to the interval in which its event happens. Only the stats_* helpers write them.
local function stats_key(queue)
  local now_s = math.floor(NOW / 1000)
  local start = string.format('%d', now_s - now_s % STATS.interval_s)
  local key = k('queue', queue, 'interval', start)
  if redis.call('HSETNX', key, 'start', start) == 1 then
    redis.call('HSET', key, 'length_s', STATS.interval_s)
    redis.call('EXPIRE', key, STATS.keep_s)
    local ikey = k('queue', queue, 'intervals')
    redis.call('ZADD', ikey, start, start)
    redis.call('ZREMRANGEBYSCORE', ikey, '-inf', string.format('%d', tonumber(start) - STATS.keep_s))
    redis.call('EXPIRE', ikey, STATS.keep_s)
  end
  return key
end

local function stats_max(key, field, v)
  if v > tonumber(redis.call('HGET', key, field) or '-1') then redis.call('HSET', key, field, v) end
end

-- A call entered `queue`.
local function stats_offered(queue)
  redis.call('HINCRBY', stats_key(queue), 'offered', 1)
end

-- The agent answered a queued call: its wait (entering the queue to the answer, ringing included),
-- against every service-level threshold. The one place a call's wait is measured: it is kept on the
-- record (`waited_ms`), which the call.answered event, the pop, the record and the report all show.
-- Returns the wait (ms), nil for a call that never queued.
local function stats_answered(ckey)
  local c = redis.call('HMGET', ckey, 'queue', 'queued_at')
  if not c[1] then return nil end
  local wait = math.max(0, NOW - tonumber(c[2] or NOW))
  redis.call('HSET', ckey, 'waited_ms', wait)
  local key = stats_key(c[1])
  redis.call('HINCRBY', key, 'answered', 1)
  redis.call('HINCRBY', key, 'answer_wait_ms', wait)
  stats_max(key, 'max_answer_wait_ms', wait)
  for _, t in ipairs(STATS.sl) do
    if wait <= t * 1000 then redis.call('HINCRBY', key, 'answered_within_' .. string.format('%d', t), 1) end
  end
  return wait
end

-- A call record's transfers: true when call control transferred it (`transfers` a non-empty JSON
-- list, or `transferred_from` set; see docs/call-control.md).
local function was_transferred(c)
  if c.transferred_from and c.transferred_from ~= '' then return true end
  if not c.transfers or c.transfers == '' then return false end
  local ok, list = pcall(cjson.decode, c.transfers)
  return ok and type(list) == 'table' and #list > 0
end

-- Time the call has spent on hold (ms): the closed holds (`hold_s`) and the one under way (`held_at`,
-- kept only while held; docs/call-control.md).
local function hold_ms(c)
  local ms = (tonumber(c.hold_s or '') or 0) * 1000
  local since = tonumber(c.held_at or '')
  if since then ms = ms + math.max(0, NOW - since) end
  return math.max(0, math.floor(ms + 0.5))
end

-- Call `c` (its hash as it was) ends while waiting in its queue or being offered to an agent: lost
-- when its worker died, else abandoned (short when sooner than STATS.short_ms after it was queued;
-- call.abandoned tells which). Nothing for calls in any other state.
-- A transferred call that ends while waiting in the queue it was transferred to is not an abandon:
-- it counts as `transfer_abandoned` (out of the abandon rate), without call.abandoned.
local function stats_call_ended(c, lost)
  if (c.state ~= 'queued' and c.state ~= 'offered') or not c.queue then return end
  local key = stats_key(c.queue)
  local wait = math.max(0, NOW - tonumber(c.queued_at or NOW))
  if lost then
    redis.call('HINCRBY', key, 'lost', 1)
    return
  end
  if was_transferred(c) then
    redis.call('HINCRBY', key, 'transfer_abandoned', 1)
    return
  end
  local short = wait < STATS.short_ms
  if short then
    redis.call('HINCRBY', key, 'short_abandoned', 1)
  else
    redis.call('HINCRBY', key, 'abandoned', 1)
    redis.call('HINCRBY', key, 'abandon_wait_ms', wait)
    stats_max(key, 'max_abandon_wait_ms', wait)
  end
  emit('call.abandoned', {call_id = c.call_id or '', queue = c.queue, waited_s = wait / 1000.0, short = short,
                          state = c.state, agent_id = c.agent_id or ''})
end

-- A waiting call left `queue` for the IVR: `timeout` (max wait) or another reason.
local function stats_left_queue(queue, reason)
  if not queue then return end
  redis.call('HINCRBY', stats_key(queue), reason == 'timeout' and 'timeouts' or 'left', 1)
end

-- A waiting caller of `queue` booked a callback (and stopped waiting).
local function stats_callback(queue)
  redis.call('HINCRBY', stats_key(queue), 'callbacks', 1)
end

-- An answered call of `queue` was handled: talk + hold + wrap-up `ms` (from record_handled), of
-- which `held` ms on hold.
local function stats_handled(queue, ms, held)
  local key = stats_key(queue)
  redis.call('HINCRBY', key, 'handled', 1)
  redis.call('HINCRBY', key, 'handle_ms', math.max(0, math.floor(ms + 0.5)))
  if held and held > 0 then redis.call('HINCRBY', key, 'hold_ms', held) end
end

-- Agent statistics (ivr/queues/agent_stats.py): per agent one hash per statistics interval (the
-- queues' interval length; kept 35 days, or the queues' keep if shorter: ~200 bytes each, and a floor
-- has many more agents than queues), indexed by a ZSET of interval starts: ms_<state> (time spent in
-- each state but offline, split at interval boundaries), handled, handle_ms, talk_ms, hold_ms.
local AGENT_KEEP_S = math.min(STATS.keep_s, 35 * 86400)
local function agent_stats_key(aid, start)
  local key = k('agent', aid, 'interval', string.format('%d', start))
  if redis.call('HSETNX', key, 'start', string.format('%d', start)) == 1 then
    redis.call('HSET', key, 'length_s', STATS.interval_s)
    redis.call('EXPIREAT', key, math.max(start + AGENT_KEEP_S, math.floor(NOW / 1000) + 3600))
    local ikey = k('agent', aid, 'intervals')
    redis.call('ZADD', ikey, start, start)
    redis.call('ZREMRANGEBYSCORE', ikey, '-inf', '(' .. string.format('%d', math.floor(NOW / 1000) - AGENT_KEEP_S))
    redis.call('EXPIRE', ikey, AGENT_KEEP_S)
  end
  return key
end

-- The agent spent [from_ms, to_ms) in `state`: add it to each interval it overlaps. Bounded: only the
-- intervals that begin within the last 48 hours (or the keep window, if shorter) count, so one change
-- writes at most 192 quarter hours (a state held for days is a forgotten sign-out); offline never counts.
local AGENT_SPLIT_S = math.min(AGENT_KEEP_S, 2 * 86400)
local function agent_state_time(aid, state, from_ms, to_ms)
  if not state or state == 'offline' or not from_ms or to_ms <= from_ms then return end
  local len = STATS.interval_s * 1000
  local oldest = to_ms - AGENT_SPLIT_S * 1000
  local t = math.max(from_ms, oldest + (len - oldest % len) % len)
  while t < to_ms do
    local start = t - t % len
    local stop = math.min(to_ms, start + len)
    redis.call('HINCRBY', agent_stats_key(aid, start / 1000), 'ms_' .. state, stop - t)
    t = stop
  end
end

-- The agent's part of a call ended: handle `ms` (talk + hold + wrap-up, as the queue counts it), of
-- which `held` on hold and `wrapup_ms` wrap-up; talk is the rest.
local function agent_handled(aid, ms, held, wrapup_ms)
  if not aid or aid == '' then return end
  local key = agent_stats_key(aid, math.floor(NOW / 1000) - math.floor(NOW / 1000) % STATS.interval_s)
  ms = math.max(0, math.floor(ms + 0.5))
  held = math.max(0, math.floor((held or 0) + 0.5))
  redis.call('HINCRBY', key, 'handled', 1)
  redis.call('HINCRBY', key, 'handle_ms', ms)
  redis.call('HINCRBY', key, 'hold_ms', held)
  redis.call('HINCRBY', key, 'talk_ms', math.max(0, ms - held - math.floor((wrapup_ms or 0) + 0.5)))
end

-- Queue history for wait estimates (ivr/queues/estimate.py): exponentially weighted averages in
-- the queue's stats hash, updated as calls are answered and end.
local EWMA_ALPHA = 0.25
local function ewma(key, field, sample)
  local prev = tonumber(redis.call('HGET', key, field) or '')
  local v = sample
  if prev then v = prev + EWMA_ALPHA * (sample - prev) end
  redis.call('HSET', key, field, math.floor(v + 0.5))
end

-- A waiting call was answered: it left the head of its queue when it was offered. The time it spent
-- at the head (from the later of its queueing and the previous departure) is sampled only when the
-- caller had to wait (not offered the moment it was queued): that is the queue's departure interval.
local function record_departure(ckey)
  local c = redis.call('HMGET', ckey, 'queue', 'queued_at', 'offered_at')
  if not c[1] then return end
  local skey = k('queue', c[1], 'stats')
  local queued, off = tonumber(c[2] or NOW), tonumber(c[3] or NOW)
  local last = tonumber(redis.call('HGET', skey, 'last_departure') or 0)
  if off > queued then ewma(skey, 'gap_ms', math.max(0, off - math.max(queued, last))) end
  redis.call('HSET', skey, 'last_departure', math.max(off, last))
  redis.call('HINCRBY', skey, 'departures', 1)
end

-- An answered call of `queue` ended: its handle time (talk + hold + wrap-up) in ms, `held` ms of it
-- on hold (the handle time runs from the answer, so the hold is in it already).
local function record_handled(queue, ms, held, aid, wrapup_ms)
  agent_handled(aid, ms, held, wrapup_ms)  -- the agent's own figures (agent statistics, above)
  if not queue then return end
  stats_handled(queue, ms, held)
  local skey = k('queue', queue, 'stats')
  ewma(skey, 'aht_ms', math.max(0, ms))
  redis.call('HINCRBY', skey, 'handled', 1)
end

-- The call list (GET /api/v1/calls, ivr/queues/store.py list_calls): call `cid` (record `c`) in the
-- index of every call, of its queue and of each agent of `aids`, scored by its start (ms). ZADD of
-- the same score is idempotent, so each script that learns something about the call may index it.
-- Every write trims its index to the calls whose record may still exist, and renews its expiry.
local CALLS_KEEP_S = STATS.calls_keep_s or 8 * 86400
local function index_add(key, score, cid)
  redis.call('ZADD', key, score, cid)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', NOW - CALLS_KEEP_S * 1000))
  redis.call('EXPIRE', key, CALLS_KEEP_S)
end

local function index_call(cid, c, aids)
  local started = tonumber(c.started_at or '')
  if not started then return end
  index_add(k('calls', 'started'), started, cid)
  if c.queue and c.queue ~= '' then index_add(k('queue', c.queue, 'calls'), started, cid) end
  for _, aid in ipairs(aids or {}) do
    if aid and aid ~= '' then index_add(k('agent', aid, 'calls'), started, cid) end
  end
end

-- The agents a call record names as having handled it: its agent (when it answered), the agent of
-- the last transfer, the sender of every transfer and the agents of its conference (the same set
-- as handled_by in ivr/cti/calls.py, who may read the record).
local function call_agents(c)
  local out = {}
  if c.agent_id and c.answered_at then out[#out + 1] = c.agent_id end
  if c.transferred_from and c.transferred_from ~= '' then out[#out + 1] = c.transferred_from end
  for _, f in ipairs({'transfers', 'conference'}) do
    local ok, list = pcall(cjson.decode, c[f] or '')
    if ok and type(list) == 'table' then
      for _, t in ipairs(list) do
        if type(t) == 'table' and type(t.from_agent) == 'string' then out[#out + 1] = t.from_agent end
        if type(t) == 'string' then out[#out + 1] = t end
      end
    end
  end
  return out
end

-- The single place agent state changes; keeps the idle indexes in step with it. An agent that stops
-- being reserved while it holds a case's follow-up task (`task`: it went on break, logged off...)
-- gives the task back (cases.lua): the case is offered again.
local function set_agent_state(aid, state, reason, by)
  local key = k('agent', aid)
  local prev = redis.call('HGET', key, 'state')
  -- agent statistics: the time spent in the state it leaves (or enters again: state_since restarts)
  agent_state_time(aid, prev, tonumber(redis.call('HGET', key, 'state_since') or ''), NOW)
  -- a supervisor's change asked while the agent was on a call (agent_force.lua) applies once the call
  -- and its wrap-up are over, unless the agent signs out itself
  if state ~= 'reserved' and state ~= 'oncall' and state ~= 'wrapup' then
    local p = redis.call('HMGET', key, 'pending_state', 'pending_reason', 'pending_by')
    if p[1] then
      redis.call('HDEL', key, 'pending_state', 'pending_reason', 'pending_by', 'pending_at')
      if state ~= 'offline' then state, reason, by = p[1], p[2] or '', p[3] or '' end
    end
  end
  if state ~= 'reserved' then
    local task = redis.call('HGET', key, 'task')
    if task then CS.task_left(task, aid, state) end
  end
  redis.call('HSET', key, 'state', state, 'state_since', NOW, 'reason', reason or '', 'state_by', by or '')
  local skills = agent_skills(aid)
  R.index_agent(aid, skills, state == 'available')
  for s, _ in pairs(skills) do  -- logged-in agents per skill, for wait estimates
    if state == 'offline' then
      redis.call('SREM', k('skill', s, 'staffed'), aid)
    else
      redis.call('SADD', k('skill', s, 'staffed'), aid)
    end
  end
  if state ~= 'wrapup' then redis.call('ZREM', k('wrapup'), aid) end
  if state ~= 'reserved' and state ~= 'oncall' and state ~= 'wrapup' then
    redis.call('HDEL', key, 'call_id', 'offer_id')
  end
  if prev ~= state then
    -- into wrap-up: its deadline (set just before, see release_agent), so every desktop counts down to it
    local wrapup_until = state == 'wrapup' and tonumber(redis.call('ZSCORE', k('wrapup'), aid)) or nil
    emit('agent.state', {agent_id = aid, state = state, previous = prev or 'unknown', reason = reason or '',
                         wrapup_until = wrapup_until, by = (by ~= '' and by) or nil})  -- by: a supervisor only
  end
end

-- Reserve agent `aid` for call `cid` waiting in `queue`; hand the offer to the call's worker.
-- A callback goes to a live worker with a free slot (which dials the customer); with none, false
-- (the callback waits a moment out of the routing indexes; the agent stays available).
local function offer(cid, aid, queue)
  local ckey = k('call', cid)
  local c = hgetall(ckey)
  if c.kind == 'callback' and not CB.assign_worker(cid, c) then return false end
  R.unqueue(cid)
  local n = redis.call('HINCRBY', ckey, 'offers', 1)
  local offer_id = cid .. '.' .. n
  set_agent_state(aid, 'reserved', 'offer')
  local agent = hgetall(k('agent', aid))
  redis.call('HSET', k('agent', aid), 'call_id', cid, 'offer_id', offer_id)
  set_call_state(ckey, 'offered', 'agent_id', aid, 'offer_id', offer_id, 'offered_at', NOW)
  local waited = (NOW - tonumber(c.queued_at or NOW)) / 1000.0
  local msg = {type = 'offer', offer_id = offer_id, call_id = cid, agent_id = aid,
               sip_uri = agent.sip_uri or '', queue = queue}
  if c.kind == 'callback' then CB.offer_fields(msg, c) end
  redis.call('RPUSH', k('worker', c.worker, 'inbox'), cjson.encode(msg))
  emit('call.offered', {call_id = cid, offer_id = offer_id, agent_id = aid, queue = queue,
                        priority = tonumber(c.priority or 0), waited_s = waited,
                        ani = c.ani or '', dnis = c.dnis or '', hotline = c.hotline or '',
                        language = c.language or '', ewt_s = tonumber(c.ewt_s),
                        transferred_from = c.transferred_from or ''},
       {journey = c.journey or '{}'})
  return cjson.encode(msg)
end

-- Offer waiting call `cid` to an available agent chosen by its route (routing.lua).
local function match_call(cid)
  return R.match_call(cid)
end

-- Offer the best waiting caller (priority, then time) agent `aid` qualifies for (routing.lua).
local function match_agent(aid)
  -- not available after all: a pending change of a supervisor's applied instead (set_agent_state)
  if redis.call('HGET', k('agent', aid), 'state') ~= 'available' then return false end
  return R.match_agent(aid)
end

-- The agent's part of call `cid` is over: wrap-up (`wrapup` seconds), or available and matched at
-- once. Only while the agent still holds that call (never twice, never someone else's call).
local function release_agent(cid, aid, wrapup, reason)
  if not aid or redis.call('HGET', k('agent', aid), 'call_id') ~= cid then return false end
  if wrapup > 0 then
    -- the deadline (epoch ms) is the one place wrap-up's end is kept: housekeeping releases the agent
    -- then, desktops count down to it, the agent may extend it (agent_wrapup_extend.lua)
    redis.call('ZADD', k('wrapup'), NOW + math.floor(wrapup * 1000 + 0.5), aid)
    set_agent_state(aid, 'wrapup', reason)
  else
    set_agent_state(aid, 'available', reason)
    match_agent(aid)
  end
  return true
end

-- End a call whatever state it is in; `lost` marks calls whose worker died. Returns the outcome.
-- A caller hanging up while waiting keeps its place `resume_s` seconds for a redial (callbacks.lua);
-- a callback not yet talking to an agent whose worker died is tried again instead.
local function finish_call(cid, reason, wrapup, ttl, lost, resume_s)
  local ckey = k('call', cid)
  local c = hgetall(ckey)
  if not c.state or c.state == 'ended' then return false end
  if lost then
    local requeued = CB.on_lost(cid, c)
    if requeued then return requeued end
  end
  local outcome = 'completed'
  -- a caller an agent transferred, who hangs up waiting for the next one, is not an abandon
  local gave_up = was_transferred(c) and 'transfer_abandoned' or 'abandoned'
  if c.state == 'queued' then
    R.unqueue(cid)
    outcome = gave_up
  elseif c.state == 'offered' then
    outcome = gave_up
    if redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
      set_agent_state(c.agent_id, 'available', lost and 'call_lost' or 'caller_abandoned')
      match_agent(c.agent_id)
    end
  elseif c.state == 'connected' or c.state == 'held' or c.state == 'consulting' or c.state == 'conferenced' then
    local held = hold_ms(c)
    if c.held_at then redis.call('HINCRBYFLOAT', ckey, 'hold_s', (NOW - tonumber(c.held_at)) / 1000.0) end
    redis.call('HDEL', ckey, 'held_at')
    if not lost then
      record_handled(c.queue, NOW - tonumber(c.agent_since or c.answered_at or NOW) + wrapup * 1000, held,
                     c.agent_id, wrapup * 1000)
    end
    release_agent(cid, c.agent_id, wrapup, lost and 'call_lost' or '')
    -- a consult or conference target agent: wrap-up when it talked, available when it was only rung
    local target = cjson.decode(c.consult or '{}').agent_id
    if target and target ~= '' and redis.call('HGET', k('agent', target), 'call_id') == cid then
      if cjson.decode(c.consult).state == 'talking' then
        release_agent(cid, target, wrapup, lost and 'call_lost' or 'consult')
      else
        set_agent_state(target, 'available', 'consult_ended')
        match_agent(target)
      end
    end
  elseif c.state == 'transferring' then
    outcome = 'transferred'  -- handed to a number outside (or the caller left while it rang)
  elseif c.state == 'dialing' then
    -- a click-to-dial call that never connected (its worker died, or it was ended before the answer)
    outcome = 'failed'
    if c.agent_id and redis.call('HGET', k('agent', c.agent_id), 'call_id') == cid then
      set_agent_state(c.agent_id, 'available', lost and 'call_lost' or 'outbound_ended')
      match_agent(c.agent_id)
    end
  elseif c.state == 'ivr' then
    -- back in the plan: after its agent left (a survey: the call was answered), or never answered
    outcome = c.answered_at and 'completed' or 'ivr'
  end
  stats_call_ended(c, lost)
  if outcome == 'abandoned' and not lost then CB.remember_abandon(c, resume_s) end
  if lost then outcome = 'lost' end
  set_call_state(ckey, 'ended', 'ended_at', NOW, 'end_reason', reason, 'outcome', outcome)
  index_call(cid, c, call_agents(c))
  redis.call('SREM', k('calls', 'active'), cid)
  redis.call('SREM', k('worker', c.worker, 'calls'), cid)
  redis.call('EXPIRE', ckey, ttl)
  emit('call.ended', {call_id = cid, outcome = outcome, reason = reason, agent_id = c.agent_id or '',
                      queue = c.queue or '', duration_s = (NOW - tonumber(c.started_at or NOW)) / 1000.0})
  if c.kind == 'callback' then CB.close(cid, outcome == 'completed' and 'done' or outcome, ttl) end
  if c.kind == 'dialout' then DO.ended(cid, c, outcome, reason, lost) end
  CB.activate(c)  -- the caller who booked a callback is gone: it competes for agents now
  return outcome
end

-- Every call of a dead worker is lost; its undelivered offers are dropped. Returns the count.
local function reap(worker, wrapup, ttl)
  local calls = redis.call('SMEMBERS', k('worker', worker, 'calls'))
  for _, cid in ipairs(calls) do
    if not finish_call(cid, 'worker_lost', wrapup, ttl, true) then
      redis.call('SREM', k('worker', worker, 'calls'), cid)
    end
  end
  redis.call('DEL', k('worker', worker, 'inbox'))
  if #calls > 0 then emit('worker.lost', {worker = worker, calls = #calls}) end
  return #calls
end
