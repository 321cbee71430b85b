-- Complaint cases (ivr/queues/store.py, "cases"): the status machine, the single place a case's
-- `status` is written (set_case_status; create_case for a new case), the counters and indexes it
-- keeps in step, and the case events. Mirrored in ivr/core/case_states.py (a unit test checks the
-- tables agree). The last library (after originate.lua); its end holds the follow-up tasks.
--
-- A case is the hash k('case', id) (id 'CS<n>' from k('cases', 'seq')). Indexes: k('cases', 'index')
-- (every case by opened_at), k('agent', owner, 'cases') (the owner's, by opened_at), k('cases', 'due')
-- (pending cases, i.e. open or reopened, by due_at), k('cases', 'deadlines') (pending cases whose
-- deadline the scan has not marked yet, by due_at), k('customer', sha1(number), 'cases') (a customer's
-- unfinished cases, i.e. open, contacted or reopened, by opened_at: a repeat call finds them).
-- Counters in k('cases', 'counts'): status:<s>, open:<tier> (pending cases per tier), overdue
-- (pending cases marked overdue).
-- Errors: `case.not_found`, `case.bad_transition` (a move the table refuses), `case.invalid` (a value
-- the store's Python checks should have refused already: the scripts check again, cheaply).

local CASE_TRANSITIONS = {
  open = {'contacted', 'resolved', 'closed'},
  contacted = {'resolved', 'closed'},
  resolved = {'closed', 'reopened'},
  closed = {'reopened'},
  reopened = {'contacted', 'resolved', 'closed'},
}

local CASE_INITIAL = 'open'
local CASE_PENDING = {open = true, reopened = true}
-- Not finished yet: in the customer's index (k('customer', digest, 'cases')), what a repeat call finds.
local CASE_UNFINISHED = {open = true, contacted = true, reopened = true}
local CUSTOMER_CASES_KEEP = 20  -- the newest unfinished cases one customer's index keeps

CS.ALLOWED = {}  -- CS is declared by the prelude (set_agent_state gives a leaving agent's task back)
CS.TIERS = {urgent = true, important = true, normal = true}
for from, tos in pairs(CASE_TRANSITIONS) do
  CS.ALLOWED[from] = {}
  for _, to in ipairs(tos) do CS.ALLOWED[from][to] = true end
end

function CS.fail(code, msg)
  error({err = 'case.' .. code .. ' ' .. msg})
end

-- The controllable clock: a script given a time (epoch ms, '' = the server's) runs at that time;
-- its events' `ts` too.
function CS.clock(arg)
  if arg and arg ~= '' then NOW = CS.ms('now', arg) end
  return NOW
end

function CS.ms(name, v)
  local t = tonumber(v or '')
  if not t or t < 0 or t >= 1e14 then CS.fail('invalid', name .. ' must be an epoch time in ms') end
  return math.floor(t)
end

function CS.check_id(id)
  if type(id) ~= 'string' or #id > 14 or not string.match(id, '^CS[0-9]+$') then
    CS.fail('invalid', 'a case id is CS followed by 1-12 digits')
  end
  return id
end

function CS.check_tier(tier)
  if not CS.TIERS[tier] then CS.fail('invalid', 'unknown tier') end
  return tier
end

-- A text of at most `max` characters (UTF-8: at most 4 bytes each; Python counted them exactly).
function CS.check_len(name, v, max, bytes)
  if type(v) ~= 'string' or #v > (bytes or max * 4) then CS.fail('invalid', name .. ' is too long') end
  return v
end

-- An id that goes into key names ('' allowed): letters, digits, _ . - : (at most `max`).
function CS.check_name(name, v, max)
  if type(v) ~= 'string' or #v > max or not string.match(v, '^[A-Za-z0-9_.:-]*$') then
    CS.fail('invalid', name .. ' is not valid')
  end
  return v
end

-- Characters in a UTF-8 string (bytes that do not continue a character).
function CS.chars(s)
  local _, n = string.gsub(s, '[^\128-\191]', '')
  return n
end

function CS.load(id)
  local c = hgetall(k('case', id))
  if not c.status then CS.fail('not_found', id) end
  return c
end

-- The case as the store returns it (JSON of the hash).
function CS.view(id)
  return cjson.encode(hgetall(k('case', id)))
end

local function case_count(field, delta)
  redis.call('HINCRBY', k('cases', 'counts'), field, delta)
end

-- The case starts waiting for contact by `due` (ms): counted open, in the due index and the scan's list.
function CS.enter_pending(id, tier, due)
  case_count('open:' .. tier, 1)
  redis.call('ZADD', k('cases', 'due'), due, id)
  redis.call('ZADD', k('cases', 'deadlines'), due, id)
end

-- The pending case `c` stops waiting (contacted, resolved, closed).
function CS.leave_pending(id, c)
  case_count('open:' .. c.tier, -1)
  redis.call('ZREM', k('cases', 'due'), id)
  redis.call('ZREM', k('cases', 'deadlines'), id)
  if c.overdue == '1' then case_count('overdue', -1) end
end

-- The due time of pending case `c` moves to `due`: a new deadline, not marked overdue (yet).
function CS.move_due(id, c, due)
  redis.call('ZADD', k('cases', 'due'), due, id)
  redis.call('ZADD', k('cases', 'deadlines'), due, id)
  if c.overdue == '1' then case_count('overdue', -1) end
end

-- The index of customer `customer`'s unfinished cases (by opened_at); never the number in the key
-- name: its SHA-1 (ivr/queues/keys.py customer_cases).
function CS.customer_key(customer)
  return k('customer', redis.sha1hex(customer), 'cases')
end

-- Case `id` of `customer` ('' = anonymous: no index) opened at `opened_at` enters (`on`) or leaves
-- its customer's index; the index keeps the newest CUSTOMER_CASES_KEEP.
local function customer_index(id, customer, opened_at, on)
  if (customer or '') == '' then return end
  local key = CS.customer_key(customer)
  if not on then
    redis.call('ZREM', key, id)
    return
  end
  redis.call('ZADD', key, opened_at, id)
  if redis.call('ZCARD', key) > CUSTOMER_CASES_KEEP then
    redis.call('ZREMRANGEBYRANK', key, 0, -(CUSTOMER_CASES_KEEP + 1))
  end
end

-- The ids of `customer`'s unfinished cases, newest first, `limit` at most (an id whose case is gone
-- or finished, which the setter should have prevented, is dropped from the index on the way).
function CS.customer_cases(customer, limit)
  local key, out = CS.customer_key(customer), {}
  for _, id in ipairs(redis.call('ZREVRANGE', key, 0, CUSTOMER_CASES_KEEP - 1)) do
    if #out >= limit then break end
    local st = redis.call('HGET', k('case', id), 'status')
    if st and CASE_UNFINISHED[st] then out[#out + 1] = id else redis.call('ZREM', key, id) end
  end
  return out
end

-- A new case, status open (the one other place a case's status is written). `f` holds the fields
-- (validated by the script). Returns its id.
function CS.create(f)
  local id = 'CS' .. string.format('%d', redis.call('INCR', k('cases', 'seq')))
  local key = k('case', id)
  redis.call('HSET', key, 'id', id, 'tier', f.tier, 'status', CASE_INITIAL, 'reason', f.reason,
             'customer', f.customer, 'customer_name', f.customer_name, 'crm_id', f.crm_id, 'hotline', f.hotline,
             'owner', f.owner, 'opened_by', f.opened_by, 'opened_at', NOW, 'due_at', f.due_at,
             'contacted_at', '', 'resolved_at', '', 'closed_at', '', 'updated_at', NOW, 'calls', '[]',
             'reopened', 0, 'overdue', '', 'first_contact_ms', '', 'first_contact_met', '', 'version', 1)
  case_count('status:' .. CASE_INITIAL, 1)
  CS.enter_pending(id, f.tier, f.due_at)
  redis.call('ZADD', k('cases', 'index'), NOW, id)
  customer_index(id, f.customer, NOW, CASE_UNFINISHED[CASE_INITIAL])
  if f.owner ~= '' then redis.call('ZADD', k('agent', f.owner, 'cases'), NOW, id) end
  return id
end

-- The single setter of a case's status (see CASE_TRANSITIONS). `due_at` (ms) is the new due time,
-- required to reopen. Keeps the counters and the due index in step and emits case.status.
-- Returns the previous status.
local function set_case_status(id, status, by, now, due_at)
  local key = k('case', id)
  local c = CS.load(id)
  local prev = c.status
  if not (CS.ALLOWED[prev] and CS.ALLOWED[prev][status]) then
    CS.fail('bad_transition', id .. ' ' .. prev .. ' -> ' .. tostring(status))
  end
  local fields = {'HSET', key, 'status', status, 'updated_at', now}
  if status == 'reopened' then
    if not due_at then CS.fail('invalid', 'reopening a case needs its new due time') end
    CS.followup_cancel(id, c, 'reopened')  -- handled again: no follow-up of the old close
    fields[#fields + 1] = 'due_at'; fields[#fields + 1] = due_at
    fields[#fields + 1] = 'overdue'; fields[#fields + 1] = ''
    redis.call('HINCRBY', key, 'reopened', 1)
  elseif status == 'contacted' and (c.contacted_at or '') == '' then
    local opened, due = tonumber(c.opened_at) or now, tonumber(c.due_at) or now
    fields[#fields + 1] = 'contacted_at'; fields[#fields + 1] = now
    fields[#fields + 1] = 'first_contact_ms'; fields[#fields + 1] = math.max(0, now - opened)
    fields[#fields + 1] = 'first_contact_met'; fields[#fields + 1] = (now <= due) and '1' or '0'
  elseif status == 'resolved' then
    fields[#fields + 1] = 'resolved_at'; fields[#fields + 1] = now
  elseif status == 'closed' then
    fields[#fields + 1] = 'closed_at'; fields[#fields + 1] = now
  end
  -- closed cases by when they were closed: the retention purge deletes the old ones
  if status == 'closed' then redis.call('ZADD', k('cases', 'closed'), now, id)
  elseif prev == 'closed' then redis.call('ZREM', k('cases', 'closed'), id) end
  case_count('status:' .. prev, -1)
  case_count('status:' .. status, 1)
  if CASE_PENDING[prev] and not CASE_PENDING[status] then CS.leave_pending(id, c) end
  if CASE_PENDING[status] and not CASE_PENDING[prev] then CS.enter_pending(id, c.tier, due_at) end
  if (CASE_UNFINISHED[prev] or false) ~= (CASE_UNFINISHED[status] or false) then
    customer_index(id, c.customer, c.opened_at, CASE_UNFINISHED[status])
  end
  redis.call(unpack(fields))
  redis.call('HINCRBY', key, 'version', 1)
  emit('case.status', {case_id = id, status = status, previous = prev, tier = c.tier, agent_id = c.owner or '',
                       by = by, due_at = due_at or tonumber(c.due_at)})
  -- no longer waiting for contact: a follow-up task out for it goes back (its agent is free again)
  if CASE_PENDING[prev] and not CASE_PENDING[status] and (c.task_agent or '') ~= '' then
    CS.task_back(id, c.task_agent, 'case_' .. status, false)
  end
  return prev
end

-- A call linked to case `id` (the call record's `case_id`) connected agent `aid` with the customer:
-- a case waiting for contact is contacted (the first contact is measured from now).
function CS.call_connected(id, aid)
  local st = redis.call('HGET', k('case', id), 'status')
  if st and CASE_PENDING[st] then set_case_status(id, 'contacted', aid or '', NOW, nil) end
end

-- Link call `cid` to case `id` (hash `c`): last in its `calls` (once; the newest CALLS_KEEP kept),
-- and the call record (when it still exists) names the case. False when it was the last linked already.
local CASE_CALLS_KEEP = 50
function CS.link_call(id, c, cid)
  local ok, calls = pcall(cjson.decode, c.calls or '[]')
  if not ok or type(calls) ~= 'table' then calls = {} end
  if calls[#calls] == cid then return false end
  local kept = {}
  for _, x in ipairs(calls) do if x ~= cid then kept[#kept + 1] = x end end
  kept[#kept + 1] = cid
  local from = math.max(1, #kept - CASE_CALLS_KEEP + 1)
  local out = {}
  for i = from, #kept do out[#out + 1] = kept[i] end
  redis.call('HSET', k('case', id), 'calls', cjson.encode(out))
  local ckey = k('call', cid)
  if redis.call('EXISTS', ckey) == 1 then redis.call('HSET', ckey, 'case_id', id) end
  return true
end

-- Mark pending cases whose due time passed (before NOW) overdue, `limit` at most, each once
-- (case.overdue). Returns how many were marked.
function CS.mark_overdue(limit)
  local ids = redis.call('ZRANGEBYSCORE', k('cases', 'deadlines'), '-inf', '(' .. string.format('%d', NOW),
                         'LIMIT', 0, limit)
  local marked = 0
  for _, id in ipairs(ids) do
    redis.call('ZREM', k('cases', 'deadlines'), id)
    local key = k('case', id)
    local c = hgetall(key)
    if c.status and CASE_PENDING[c.status] and c.overdue ~= '1' and (tonumber(c.due_at) or NOW) < NOW then
      redis.call('HSET', key, 'overdue', '1')
      redis.call('HINCRBY', key, 'version', 1)
      case_count('overdue', 1)
      emit('case.overdue', {case_id = id, tier = c.tier, agent_id = c.owner or '', due_at = tonumber(c.due_at),
                            customer = c.customer or ''})
      marked = marked + 1
    end
  end
  return marked
end

-- Position (s1, id1) comes after (s2, id2) in the list's order (newest first; ties of one ms by id,
-- descending, comparing bytes as a sorted set orders the members of one score).
function CS.after(s1, id1, s2, id2)
  if s1 ~= s2 then return s1 < s2 end
  for i = 1, math.min(#id1, #id2) do
    local x, y = string.byte(id1, i), string.byte(id2, i)
    if x ~= y then return x < y end
  end
  return #id1 < #id2
end

-- How a case counts in the time to first contact (case_first_contact, case_report), from its fields
-- status, contacted_at, first_contact_met, overdue: 'met' (first contacted by its due time), 'late'
-- (first contacted after it), 'overdue' (open or reopened, never contacted, marked overdue by the
-- deadline scan: missed too), nil (not judged: still in time, or resolved or closed without a contact).
-- Read-only; the one definition of the report's classes.
function CS.first_contact_class(status, contacted_at, met, overdue)
  if contacted_at and contacted_at ~= '' then
    if met == '1' then return 'met' end
    return 'late'
  end
  if CASE_PENDING[status or ''] and overdue == '1' then return 'overdue' end
  return nil
end

-- --- Follow-up tasks (ivr/queues/store.py case_offer_tasks, case_task_accept, case_task_decline) ---
-- A pending case nearing its due time is offered to one agent at a time (a preview task): the agent
-- is reserved (reason 'task', agent field `task` = the case id) and the case holds `task_agent`,
-- `task_at` and `task_expires` (ms; also its score in k('cases', 'tasks')). The agent accepts (a
-- click-to-dial call to the customer, lib/originate.lua; the case keeps its id in `task_call`),
-- declines or lets it expire (both keep the agent from this case for TASK_SKIP_MS: the ZSET
-- k('case', id, 'skip') of agent -> until ms), or leaves (break, offline: set_agent_state gives the
-- task back). While a call of the case is under way (its task call or the last linked call) it is
-- not offered; once that call ends without the customer answering, it is offered again.

local TASK_SKIP_MS = 600000
local TASK_SCAN = 500  -- pending cases (and expired tasks) one offer run looks at, at most
local TASK_AGENTS_SCAN = 32

-- Clear case `id`'s task, and agent `aid`'s `task` when it names this case.
local function task_clear(id, aid)
  redis.call('ZREM', k('cases', 'tasks'), id)
  if aid and aid ~= '' and redis.call('HGET', k('agent', aid), 'task') == id then
    redis.call('HDEL', k('agent', aid), 'task')
  end
  local key = k('case', id)
  if redis.call('EXISTS', key) == 1 then
    redis.call('HDEL', key, 'task_agent', 'task_at', 'task_expires', 'task_kind')
    redis.call('HINCRBY', key, 'version', 1)
    -- a follow-up task (回访) that goes back is due again at once (to another agent: a skip keeps this one)
    if redis.call('HGET', key, 'followup_state') == 'offered' then
      redis.call('HSET', key, 'followup_state', 'scheduled')
      redis.call('ZADD', k('cases', 'followups'), NOW, id)
    end
  end
end

-- The task of case `id` goes back from agent `aid` for `reason` (declined, timeout, case_<status>):
-- case.task_declined; with `skip` the agent is kept from this case for TASK_SKIP_MS. An agent still
-- reserved for it is available again and offered a waiting caller at once.
function CS.task_back(id, aid, reason, skip)
  local a = redis.call('HMGET', k('agent', aid), 'state', 'task', 'call_id')
  task_clear(id, aid)
  if skip then
    local skey = k('case', id, 'skip')
    redis.call('ZREMRANGEBYSCORE', skey, '-inf', NOW)
    redis.call('ZADD', skey, NOW + TASK_SKIP_MS, aid)
    redis.call('PEXPIRE', skey, 2 * TASK_SKIP_MS)
  end
  emit('case.task_declined', {case_id = id, agent_id = aid, reason = reason})
  if a[1] == 'reserved' and a[2] == id and not a[3] then
    set_agent_state(aid, 'available', 'task_' .. reason)
    match_agent(aid)
  end
end

-- Agent `aid`, holding the task of case `id`, stops being reserved for it (set_agent_state, going to
-- `state`: break, offline...): the task goes back (case.task_declined, reason agent_<state>), no
-- exclusion. The caller changes the agent's state.
function CS.task_left(id, aid, state)
  redis.call('HDEL', k('agent', aid), 'task')
  if redis.call('HGET', k('case', id), 'task_agent') ~= aid then return end
  task_clear(id, aid)
  emit('case.task_declined', {case_id = id, agent_id = aid, reason = 'agent_' .. state})
end

-- Agent `aid` accepted the task of case `id` (hash `c`) and dials the customer on call `cid`.
function CS.task_accepted(id, c, aid, cid)
  task_clear(id, aid)
  redis.call('HSET', k('case', id), 'task_call', cid, 'updated_at', NOW)
  if c.followup_state == 'offered' then  -- a follow-up task (回访): this call is its attempt
    redis.call('ZREM', k('cases', 'followups'), id)
    redis.call('HSET', k('case', id), 'followup_state', 'calling', 'followup_call', cid)
    redis.call('HINCRBY', k('case', id), 'followup_attempts', 1)
  end
  CS.link_call(id, c, cid)
  emit('case.task_accepted', {case_id = id, agent_id = aid, call_id = cid})
end

-- Is call `cid` ('' or nil: none) under way (its record there and not ended)?
local function call_live(cid)
  if not cid or cid == '' then return false end
  local st = redis.call('HGET', k('call', cid), 'state')
  return st ~= false and st ~= 'ended'
end

-- Is a call of case `c` under way: its task call, or the last call linked to it (the customer may
-- be on the line with the hotline right now)?
local function case_on_call(c)
  if call_live(c.task_call) then return true end
  local ok, calls = pcall(cjson.decode, c.calls or '[]')
  return ok and type(calls) == 'table' and call_live(calls[#calls])
end

-- Can agent `aid` take a task of case `id` now: available, a phone that can ring (a SIP URI; a
-- registering phone registered), not kept from this case (declined or let it expire lately)?
local function can_take(id, aid)
  local a = redis.call('HMGET', k('agent', aid), 'state', 'sip_uri')
  if a[1] ~= 'available' or not a[2] or a[2] == '' or not R.phone_ready(aid) then return false end
  local until_ms = tonumber(redis.call('ZSCORE', k('case', id, 'skip'), aid) or '')
  return not (until_ms and until_ms > NOW)
end

-- May `number` be dialled: a number (digits, * and #, a leading +; 1-32) matching one of `patterns`
-- (calls.outbound_allow as Lua patterns, ivr/queues/allow.py); nil patterns: no check (tools, tests).
function CS.number_allowed(number, patterns)
  if patterns == nil then return true end
  if type(number) ~= 'string' or #number > 32 or not string.match(number, '^%+?[0-9*#]+$') then return false end
  for _, p in ipairs(patterns) do
    if string.match(number, p) then return true end
  end
  return false
end

-- The allow patterns a script got as JSON ('' = no check).
function CS.allow_arg(arg)
  if arg == nil or arg == '' then return nil end
  local ok, patterns = pcall(cjson.decode, arg)
  if not ok or type(patterns) ~= 'table' then CS.fail('invalid', 'allow must be a JSON array of patterns') end
  return patterns
end

-- Every available agent, longest idle first (read once per run, for overdue cases).
local any_agents = nil
local function available_agents()
  if any_agents == nil then
    any_agents = {}
    local since = {}
    for _, aid in ipairs(redis.call('SMEMBERS', k('agents'))) do
      local s = redis.call('HMGET', k('agent', aid), 'state', 'state_since')
      if s[1] == 'available' then
        any_agents[#any_agents + 1] = aid
        since[aid] = tonumber(s[2]) or 0
      end
    end
    table.sort(any_agents, function(x, y)
      if since[x] ~= since[y] then return since[x] < since[y] end
      return x < y
    end)
  end
  return any_agents
end

-- The agent to offer case `id` (hash `c`): its owner when it can take it; else the longest idle
-- agent with `skill` (routing's idle index) who can; an overdue case, else any agent who can
-- (longest idle). nil when nobody can now.
local function task_agent_for(id, c, skill, overdue)
  if (c.owner or '') ~= '' and can_take(id, c.owner) then return c.owner end
  local ikey, start = k('skill', skill, 'idle'), 0
  while true do
    local ids = redis.call('ZRANGE', ikey, start, start + TASK_AGENTS_SCAN - 1)
    if #ids == 0 then break end
    for _, aid in ipairs(ids) do
      if can_take(id, aid) then return aid end
    end
    start = start + TASK_AGENTS_SCAN
  end
  if not overdue then return nil end
  for _, aid in ipairs(available_agents()) do
    if can_take(id, aid) then return aid end
  end
  return nil
end

local TASK_CASE_FIELDS = {'tier', 'owner', 'customer', 'customer_name', 'crm_id', 'reason', 'due_at', 'task_agent',
                          'task_call', 'calls', 'hotline'}

-- Offer case `id` to agent `aid` for `timeout_ms`: the agent reserved, case.task_offered.
local function task_offer(id, c, aid, timeout_ms, overdue, kind)
  local expires = NOW + timeout_ms
  set_agent_state(aid, 'reserved', 'task')
  redis.call('HSET', k('agent', aid), 'task', id)
  local key = k('case', id)
  redis.call('HSET', key, 'task_agent', aid, 'task_at', NOW, 'task_expires', expires, 'task_kind', kind or 'deadline')
  redis.call('HINCRBY', key, 'version', 1)
  redis.call('ZADD', k('cases', 'tasks'), expires, id)
  emit('case.task_offered', {case_id = id, agent_id = aid, tier = c.tier, customer = c.customer or '',
                             due_at = tonumber(c.due_at), overdue = overdue, reason = c.reason or '',
                             task_expires = expires, owner = c.owner or '', customer_name = c.customer_name or '',
                             crm_id = c.crm_id or '', hotline = c.hotline or '', task_kind = kind or 'deadline'})
end

-- Tasks past their expiry go back (reason timeout: the agent is kept from the case a while), then
-- pending cases due by NOW + `before_ms` (the earliest due first: overdue ones lead) with no task
-- out and no call under way are offered, `limit` at most. Returns how many were offered.
function CS.offer_tasks(before_ms, skill, timeout_ms, limit, allow)
  local tkey = k('cases', 'tasks')
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', tkey, '-inf', '(' .. string.format('%d', NOW),
                                 'LIMIT', 0, TASK_SCAN)) do
    local aid = redis.call('HGET', k('case', id), 'task_agent')
    if aid then CS.task_back(id, aid, 'timeout', true) else redis.call('ZREM', tkey, id) end
  end
  local offered = 0
  local ids = redis.call('ZRANGEBYSCORE', k('cases', 'due'), '-inf', string.format('%d', NOW + before_ms),
                         'LIMIT', 0, TASK_SCAN)
  for _, id in ipairs(ids) do
    if offered >= limit then break end
    local f = redis.call('HMGET', k('case', id), 'status', unpack(TASK_CASE_FIELDS))
    local c = {status = f[1] or nil}
    for i, name in ipairs(TASK_CASE_FIELDS) do c[name] = f[i + 1] or nil end
    -- a number outside calls.outbound_allow is not offered (the agent could not dial it): the case
    -- waits (and goes overdue) for a supervisor to see it
    if c.status and CASE_PENDING[c.status] and (c.task_agent or '') == '' and not case_on_call(c)
        and ((c.customer or '') == '' or CS.number_allowed(c.customer, allow)) then
      local overdue = (tonumber(c.due_at) or NOW) < NOW
      local aid = task_agent_for(id, c, skill, overdue)
      if aid then
        task_offer(id, c, aid, timeout_ms, overdue)
        offered = offered + 1
      end
    end
  end
  return offered
end

-- ---- The follow-up (回访) after a case is closed (docs/cti-api.md, "Follow-up") -------------------
-- Closing a case may schedule it (case_status.lua): fields followup (task | call), followup_at (ms),
-- followup_plan, followup_state, followup_attempts, followup_max, followup_retry_ms, followup_ring_s,
-- followup_call, followup_answers (JSON), followup_reopened; the due index k('cases', 'followups')
-- (id -> ms). followup_state: scheduled -> calling (an automated call, or the agent's task call) |
-- offered (a task out to an agent) -> calling -> answered -> done; calling -> scheduled (not reached,
-- attempts left) | failed; scheduled | offered -> cancelled (the case was reopened).

local FOLLOWUP_ANSWERS_MAX = 20
local FOLLOWUP_ANSWER_MAX = 200

-- Schedule case `id`'s follow-up: `mode` task | call at `at` (ms), `plan` for a call.
function CS.followup_schedule(id, mode, at, plan, attempts, retry_ms, ring_s, by)
  if mode ~= 'task' and mode ~= 'call' then CS.fail('invalid', 'follow-up mode must be task or call') end
  if mode == 'call' and not string.match(plan or '', '^[A-Za-z0-9][A-Za-z0-9_.-]*$') then
    CS.fail('invalid', 'a follow-up call needs a plan id')
  end
  local key = k('case', id)
  redis.call('HSET', key, 'followup', mode, 'followup_at', at, 'followup_plan', plan or '', 'followup_state',
             'scheduled', 'followup_attempts', 0, 'followup_max', attempts, 'followup_retry_ms', retry_ms,
             'followup_ring_s', ring_s, 'followup_call', '', 'followup_answers', '{}', 'followup_reopened', '')
  redis.call('ZADD', k('cases', 'followups'), at, id)
  emit('case.followup_scheduled', {case_id = id, mode = mode, at = at, plan = plan or '', by = by,
                                   agent_id = redis.call('HGET', key, 'owner') or ''})
end

-- Case `id` (hash `c`, before the change) is handled again: a follow-up not under way is cancelled.
function CS.followup_cancel(id, c, reason)
  if c.followup_state ~= 'scheduled' and c.followup_state ~= 'offered' then return end
  redis.call('ZREM', k('cases', 'followups'), id)
  redis.call('HSET', k('case', id), 'followup_state', 'cancelled')
  if c.followup_state == 'offered' and (c.task_agent or '') ~= '' then
    CS.task_back(id, c.task_agent, 'case_reopened', false)
  end
  emit('case.followup_cancelled', {case_id = id, reason = reason, agent_id = c.owner or ''})
end

local function followup_answers(c)
  local ok, a = pcall(cjson.decode, c.followup_answers or '{}')
  if not ok or type(a) ~= 'table' then return {} end
  return a
end

-- Attempt `cid` of case `id`'s follow-up: `event` answered (the customer is on the line), not_reached
-- (`outcome` busy | no_answer | failed: another attempt after followup_retry_ms, or failed at the
-- cap), not_dialled (a task's agent did not answer: offered again at once, not an attempt), ended
-- (the call is over: done). Anything else (another call of the case) changes nothing.
function CS.followup_result(id, cid, event, outcome, reason)
  local key = k('case', id)
  local c = hgetall(key)
  if not c.status or (c.followup_call or '') ~= cid then return end
  if event == 'answered' then
    if c.followup_state ~= 'calling' then return end
    redis.call('HSET', key, 'followup_state', 'answered')
    CS.link_call(id, c, cid)
  elseif event == 'not_reached' and reason == 'worker_full' then
    -- the worker had no leg free after all (its last call's legs not yet released): the customer was
    -- not called, so no attempt is used; again in a second (on any worker with a free slot)
    if c.followup_state ~= 'calling' then return end
    redis.call('HSET', key, 'followup_state', 'scheduled', 'followup_at', NOW + 1000)
    redis.call('HINCRBY', key, 'followup_attempts', -1)
    redis.call('ZADD', k('cases', 'followups'), NOW + 1000, id)
  elseif event == 'not_reached' then
    if c.followup_state ~= 'calling' then return end
    local attempt, max = tonumber(c.followup_attempts) or 1, tonumber(c.followup_max) or 1
    if attempt < max then
      local retry = tonumber(c.followup_retry_ms) or 3600000
      redis.call('HSET', key, 'followup_state', 'scheduled', 'followup_at', NOW + retry)
      redis.call('ZADD', k('cases', 'followups'), NOW + retry, id)
      emit('case.followup_retry', {case_id = id, call_id = cid, outcome = outcome, reason = reason or '',
                                   attempt = attempt, retry_in_s = retry / 1000.0, agent_id = c.owner or ''})
    else
      redis.call('HSET', key, 'followup_state', 'failed')
      emit('case.followup_failed', {case_id = id, attempts = attempt, reason = outcome, agent_id = c.owner or ''})
    end
  elseif event == 'not_dialled' then  -- the agent's side failed before the customer was dialled: again now
    if c.followup_state ~= 'calling' then return end
    redis.call('HSET', key, 'followup_state', 'scheduled', 'followup_at', NOW)
    redis.call('HINCRBY', key, 'followup_attempts', -1)
    redis.call('ZADD', k('cases', 'followups'), NOW, id)
  elseif event == 'ended' then
    if c.followup_state ~= 'answered' and c.followup_state ~= 'calling' then return end
    redis.call('HSET', key, 'followup_state', 'done', 'followup_done_at', NOW)
    emit('case.followup_done', {case_id = id, call_id = cid, outcome = outcome, answers = followup_answers(c),
                                reopened = c.followup_reopened == '1', agent_id = c.owner or ''})
  end
  redis.call('HINCRBY', key, 'version', 1)
end

-- How an automated follow-up call went (lib/dialout.lua).
DO.owners.followup = function(event, cid, c, outcome, reason)
  if (c.case_id or '') ~= '' then CS.followup_result(c.case_id, cid, event, outcome, reason) end
end

-- Follow-ups due by NOW, `limit` at most: a call is placed (DO.start: no worker free stops the run,
-- the rest stay due), a task offered to the owner or the longest idle agent with `skill` (none free:
-- it stays due). A case without a number fails at once. Returns how many started.
function CS.followups_due(limit, caller_id, skill, timeout_ms, allow)
  local fkey, started = k('cases', 'followups'), 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', fkey, '-inf', string.format('%d', NOW), 'LIMIT', 0, TASK_SCAN)) do
    if started >= limit then break end
    local key = k('case', id)
    local c = hgetall(key)
    local attempt = (tonumber(c.followup_attempts) or 0) + 1
    if not c.status or c.followup_state ~= 'scheduled' then
      redis.call('ZREM', fkey, id)
    elseif (c.customer or '') == '' or not CS.number_allowed(c.customer, allow) then
      redis.call('ZREM', fkey, id)
      redis.call('HSET', key, 'followup_state', 'failed')
      emit('case.followup_failed', {case_id = id, attempts = 0, agent_id = c.owner or '',
                                    reason = (c.customer or '') == '' and 'no_number' or 'number_not_allowed'})
    elseif c.followup == 'call' then
      local cid = 'fu-' .. id .. '-' .. string.format('%d', NOW)
      local vars = cjson.encode({['case.id'] = id, ['case.tier'] = c.tier or '', ['case.reason'] = c.reason or '',
                                 ['customer.name'] = c.customer_name or ''})
      local w, err = DO.start(cid, {purpose = 'followup', case_id = id, plan = c.followup_plan,
                                    number = c.customer, caller_id = caller_id, hotline = c.hotline or '',
                                    variables = vars, ring_s = tonumber(c.followup_ring_s) or 30})
      if not w then
        if string.sub(err.err or '', 1, 18) == 'worker.unavailable' then break end
        redis.call('ZREM', fkey, id)  -- a spec the dialler refuses (a bad plan id): it never will take it
        redis.call('HSET', key, 'followup_state', 'failed')
        emit('case.followup_failed', {case_id = id, attempts = attempt - 1, reason = 'refused',
                                      agent_id = c.owner or ''})
      else
        redis.call('ZREM', fkey, id)
        redis.call('HSET', key, 'followup_state', 'calling', 'followup_call', cid, 'followup_attempts', attempt)
        redis.call('HINCRBY', key, 'version', 1)
        emit('case.followup_started', {case_id = id, mode = 'call', attempt = attempt, call_id = cid})
        started = started + 1
      end
    elseif c.followup == 'task' and (c.task_agent or '') == '' then
      local aid = task_agent_for(id, c, skill, false)
      if aid then
        redis.call('ZREM', fkey, id)
        redis.call('HSET', key, 'followup_state', 'offered')
        task_offer(id, c, aid, timeout_ms, false, 'followup')
        emit('case.followup_started', {case_id = id, mode = 'task', attempt = attempt, agent_id = aid})
        started = started + 1
      end
    end
  end
  return started
end

-- A dial plan's answers for case `id` (case_update node) from call `cid`: merged into the case's
-- followup_answers and the call record's `answers`; `reopen_due` (ms) reopens a resolved or closed
-- case with that due time (an unsolved answer). Returns whether it reopened the case.
function CS.answers(id, cid, answers, reopen_due, by)
  local key = k('case', id)
  local c = CS.load(id)
  local merged, n = followup_answers(c), 0
  for name, value in pairs(answers) do
    if type(name) ~= 'string' or not string.match(name, '^[a-z][a-z0-9_]*$') or #name > 32 then
      CS.fail('invalid', 'an answer name must be 1-32 of a-z, 0-9, _ starting with a letter')
    end
    if type(value) ~= 'string' or #value > FOLLOWUP_ANSWER_MAX * 4 or CS.chars(value) > FOLLOWUP_ANSWER_MAX then
      CS.fail('invalid', 'an answer must be text of at most ' .. FOLLOWUP_ANSWER_MAX .. ' characters')
    end
    merged[name] = value
  end
  for _ in pairs(merged) do n = n + 1 end
  if n > FOLLOWUP_ANSWERS_MAX then CS.fail('invalid', 'a case keeps at most ' .. FOLLOWUP_ANSWERS_MAX .. ' answers') end
  redis.call('HSET', key, 'followup_answers', cjson.encode(merged), 'updated_at', NOW)
  redis.call('HINCRBY', key, 'version', 1)
  local ckey = k('call', cid)
  if cid ~= '' and redis.call('EXISTS', ckey) == 1 then
    local ok, mine = pcall(cjson.decode, redis.call('HGET', ckey, 'answers') or '{}')
    if not ok or type(mine) ~= 'table' then mine = {} end
    for name, value in pairs(answers) do mine[name] = value end
    redis.call('HSET', ckey, 'answers', cjson.encode(mine))
  end
  local reopened = false
  if reopen_due and (c.status == 'resolved' or c.status == 'closed') then
    set_case_status(id, 'reopened', by, NOW, reopen_due)
    redis.call('HSET', key, 'followup_reopened', '1')
    reopened = true
  end
  emit('case.answers', {case_id = id, call_id = cid, answers = answers, reopened = reopened, by = by,
                        agent_id = c.owner or ''})
  return reopened
end

-- ---- Retention: closed cases older than the retention are deleted -------------------------------
-- Cases closed before `before` (ms), `limit` at most: the hash, its notes and skip list, its places in
-- the indexes (every case, the owner's, a follow-up still due), the counters; case.purged each.
-- A case reopened meanwhile is no longer in k('cases', 'closed'). Returns how many were deleted.
function CS.purge_closed(before, limit)
  local ckey, purged = k('cases', 'closed'), 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', ckey, '-inf', '(' .. string.format('%d', before),
                                 'LIMIT', 0, limit)) do
    redis.call('ZREM', ckey, id)
    local key = k('case', id)
    local c = hgetall(key)
    if c.status == 'closed' then
      redis.call('ZREM', k('cases', 'index'), id)
      if (c.owner or '') ~= '' then redis.call('ZREM', k('agent', c.owner, 'cases'), id) end
      redis.call('ZREM', k('cases', 'followups'), id)
      redis.call('ZREM', k('cases', 'tasks'), id)
      redis.call('DEL', key, k('case', id, 'notes'), k('case', id, 'skip'))
      case_count('status:closed', -1)
      emit('case.purged', {case_id = id, closed_at = tonumber(c.closed_at) or 0, agent_id = c.owner or ''})
      purged = purged + 1
    end
  end
  return purged
end
