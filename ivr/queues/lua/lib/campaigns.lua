-- Outbound campaigns (ivr/queues/store.py, "campaigns"; docs/campaigns.md): the single setter of a
-- campaign's state (set_campaign_state) and of a record's (set_record_state), the dialler's tick
-- and the dialout hook of purpose 'campaign'. Mirrored in ivr/core/campaign_states.py (a unit test
-- checks the tables agree). After cases.lua (the last library).
--
-- A campaign is the hash k('campaign', id) (id 'CP<n>' from k('campaigns', 'seq')); every campaign in
-- k('campaigns', 'index') (by created_at), the running ones in k('campaigns', 'running'), stopped ones
-- whose waiting records are still being cancelled in k('campaigns', 'closing'), the ones whose
-- progress changed since their last campaign.progress in k('campaigns', 'progress').
-- Its records: hash k('campaign', id, 'record', n) (record id '<id>:<n>'), all of them in
-- k('campaign', id, 'records') (n by n), the waiting ones (pending, retry) of time zone number z in
-- k('campaign', id, 'due', z) (n by when it may be dialled: added_at, or retry_at), the digests of its
-- numbers in k('campaign', id, 'numbers') (duplicates are refused). The do-not-call list is the SET
-- k('dnc') of digests (SHA-1 of the normalised number: no number in any key name).
-- Counters on the campaign hash: `count:<record state>`, `records` (the last n).
-- Errors: `campaign.not_found`, `campaign.bad_transition`, `campaign.invalid`.

local CAMPAIGN_TRANSITIONS = {
  draft = {'running', 'stopped'},
  running = {'paused', 'stopped', 'finished'},
  paused = {'running', 'stopped'},
  stopped = {},
  finished = {},
}

local RECORD_TRANSITIONS = {
  pending = {'dialing', 'dnc', 'cancelled', 'failed'},
  dialing = {'answered', 'retry', 'failed', 'cancelled'},
  answered = {'done'},
  done = {},
  retry = {'dialing', 'dnc', 'cancelled', 'failed'},
  failed = {},
  dnc = {},
  cancelled = {},
}

local CP_WAITING = {pending = true, retry = true}
local CP_ZONES_MAX = 64
local CP_RESULT_MAX = 4096
local CP_CLOSE_BATCH = 500
local CP_GIVEN_BACK_MS = 1000  -- a call the worker could not place (worker_full) is tried again this much later

local function allowed_table(t)
  local out = {}
  for from, tos in pairs(t) do
    out[from] = {}
    for _, to in ipairs(tos) do out[from][to] = true end
  end
  return out
end
CP.ALLOWED = allowed_table(CAMPAIGN_TRANSITIONS)
CP.RECORD_ALLOWED = allowed_table(RECORD_TRANSITIONS)

function CP.fail(code, msg)
  error({err = 'campaign.' .. code .. ' ' .. msg})
end

-- The controllable clock (as CS.clock): a script given a time (epoch ms, '' = the server's) runs at it.
function CP.clock(arg)
  if arg and arg ~= '' then
    local t = tonumber(arg)
    if not t or t < 0 or t >= 1e14 then CP.fail('invalid', 'now must be an epoch time in ms') end
    NOW = math.floor(t)
  end
  return NOW
end

function CP.check_id(id)
  if type(id) ~= 'string' or #id > 14 or not string.match(id, '^CP[0-9]+$') then
    CP.fail('invalid', 'a campaign id is CP followed by 1-12 digits')
  end
  return id
end

function CP.key(id) return k('campaign', id) end
function CP.record_key(id, n) return k('campaign', id, 'record', n) end
function CP.due_key(id, z) return k('campaign', id, 'due', z) end

function CP.load(id)
  local c = hgetall(CP.key(CP.check_id(id)))
  if not c.state then CP.fail('not_found', id) end
  return c
end

function CP.view(id)
  return cjson.encode(hgetall(CP.key(id)))
end

function CP.digest(number)
  return redis.sha1hex(number)
end

function CP.dnc(number)
  return redis.call('SISMEMBER', k('dnc'), CP.digest(number)) == 1
end

local function mark_progress(id)
  redis.call('SADD', k('campaigns', 'progress'), id)
end

-- The single setter of a campaign's state (CAMPAIGN_TRANSITIONS): keeps the running set in step and
-- emits campaign.state. Returns the previous state.
local function set_campaign_state(id, state, by)
  local key = CP.key(id)
  local prev = redis.call('HGET', key, 'state')
  if not prev then CP.fail('not_found', id) end
  if not (CP.ALLOWED[prev] and CP.ALLOWED[prev][state]) then
    CP.fail('bad_transition', id .. ' ' .. prev .. ' -> ' .. tostring(state))
  end
  redis.call('HSET', key, 'state', state, 'updated_at', NOW, state .. '_at', NOW)
  redis.call('HINCRBY', key, 'version', 1)
  if state == 'running' then
    redis.call('SADD', k('campaigns', 'running'), id)
    -- the bucket starts with one token: the first call goes at once, the rest at the rate
    redis.call('HSET', key, 'tokens', 1, 'tokens_at', NOW)
  else
    redis.call('SREM', k('campaigns', 'running'), id)
  end
  if state == 'stopped' then redis.call('SADD', k('campaigns', 'closing'), id) end
  emit('campaign.state', {campaign_id = id, state = state, previous = prev, by = by})
  mark_progress(id)
  return prev
end
CP.set_state = set_campaign_state

-- The single setter of a record's state (RECORD_TRANSITIONS; nil `prev` = a new record): keeps the
-- campaign's counters in step, emits campaign.record. `f` = more fields to write (a flat list).
local function set_record_state(id, n, prev, state, f, outcome)
  local rkey = CP.record_key(id, n)
  if prev ~= nil and not (CP.RECORD_ALLOWED[prev] and CP.RECORD_ALLOWED[prev][state]) then
    CP.fail('bad_transition', id .. ':' .. n .. ' ' .. prev .. ' -> ' .. tostring(state))
  end
  local args = {'HSET', rkey, 'state', state, 'updated_at', NOW}
  for _, v in ipairs(f or {}) do args[#args + 1] = v end
  redis.call(unpack(args))
  local ckey = CP.key(id)
  if prev ~= nil then redis.call('HINCRBY', ckey, 'count:' .. prev, -1) end
  redis.call('HINCRBY', ckey, 'count:' .. state, 1)
  mark_progress(id)
  if prev ~= nil then
    emit('campaign.record', {campaign_id = id, record_id = id .. ':' .. n, state = state, previous = prev,
                             outcome = outcome or '',
                             attempt = tonumber(redis.call('HGET', rkey, 'attempts') or '0') or 0})
  end
end

-- --- creation and records ----------------------------------------------------------------------

-- A new campaign in draft; `f` holds the checked fields. Returns its id.
function CP.create(f, by)
  local id = 'CP' .. string.format('%d', redis.call('INCR', k('campaigns', 'seq')))
  redis.call('HSET', CP.key(id), 'id', id, 'name', f.name, 'plan', f.plan, 'queue', f.queue or '',
             'caller_id', f.caller_id or '', 'hotline', f.hotline or '', 'language', f.language or '',
             'pacing', f.pacing, 'window', f.window or '', 'retries', f.retries, 'ring_s', f.ring_s,
             'state', 'draft', 'created_at', NOW, 'updated_at', NOW, 'created_by', by, 'records', 0,
             'zones', '[""]', 'tokens', 0, 'tokens_at', NOW, 'progress_at', 0, 'version', 1)
  redis.call('ZADD', k('campaigns', 'index'), NOW, id)
  emit('campaign.state', {campaign_id = id, state = 'draft', previous = '', by = by})
  return id
end

-- The number of time zone `tz` ('' = the campaign's) in campaign `c`'s zones (added when new);
-- nil when the campaign has CP_ZONES_MAX zones already.
local function zone_of(id, c, tz)
  local zones = cjson.decode(c.zones or '[""]')
  for i, z in ipairs(zones) do
    if z == tz then return i - 1 end
  end
  if #zones >= CP_ZONES_MAX then return nil end
  zones[#zones + 1] = tz
  c.zones = cjson.encode(zones)
  redis.call('HSET', CP.key(id), 'zones', c.zones)
  return #zones - 1
end

-- Add rows (a list of {number, name, tz, variables (JSON text)}, checked by the store) to campaign
-- `id`. Returns {added, dnc, duplicates (1-based positions in rows), too many zones (positions)}.
function CP.add_records(id, rows)
  local c = CP.load(id)
  if c.state ~= 'draft' and c.state ~= 'running' and c.state ~= 'paused' then
    CP.fail('bad_transition', id .. ' is ' .. c.state .. ': no records can be added')
  end
  local nkey = k('campaign', id, 'numbers')
  local added, dnc, dups, zoneless = 0, 0, {}, {}
  for i, row in ipairs(rows) do
    local digest = CP.digest(row.number)
    local z = zone_of(id, c, row.tz or '')
    if z == nil then
      zoneless[#zoneless + 1] = i
    elseif redis.call('SADD', nkey, digest) == 0 then
      dups[#dups + 1] = i
    else
      local n = redis.call('HINCRBY', CP.key(id), 'records', 1)
      local rkey = CP.record_key(id, n)
      redis.call('HSET', rkey, 'id', id .. ':' .. n, 'campaign', id, 'n', n, 'number', row.number,
                 'name', row.name or '', 'tz', row.tz or '', 'zone', z, 'variables', row.variables or '{}',
                 'attempts', 0, 'last_outcome', '', 'last_reason', '', 'last_call_id', '', 'retry_at', '',
                 'result', '', 'added_at', NOW)
      redis.call('ZADD', k('campaign', id, 'records'), n, n)
      if redis.call('SISMEMBER', k('dnc'), digest) == 1 then
        set_record_state(id, n, nil, 'dnc', {'last_reason', 'dnc'})
        dnc = dnc + 1
      else
        set_record_state(id, n, nil, 'pending', {})
        redis.call('ZADD', CP.due_key(id, z), NOW, n)
      end
      added = added + 1
    end
  end
  return {added, dnc, dups, zoneless}
end

-- --- the dialler's tick ---------------------------------------------------------------------------

local function counts(c)
  local out = {}
  for st, _ in pairs(RECORD_TRANSITIONS) do out[st] = tonumber(c['count:' .. st] or '0') or 0 end
  return out
end
CP.counts = counts

-- Cancel up to `budget` waiting records of stopped campaign `id`; true when none is left.
local function close_some(id, budget)
  local c = hgetall(CP.key(id))
  if not c.state then return true end
  local zones = cjson.decode(c.zones or '[""]')
  for z = 0, #zones - 1 do
    local dkey = CP.due_key(id, z)
    local ns = redis.call('ZRANGE', dkey, 0, budget - 1)
    for _, n in ipairs(ns) do
      redis.call('ZREM', dkey, n)
      local st = redis.call('HGET', CP.record_key(id, n), 'state')
      if st and CP_WAITING[st] then set_record_state(id, n, st, 'cancelled', {}) end
      budget = budget - 1
    end
    if budget <= 0 then return false end
  end
  return true
end
CP.close_some = close_some

-- The call of record n of campaign `id` (hash `c`, record `r`): attempt r.attempts + 1.
local function dial_record(id, c, n, r, pacing)
  local attempt = (tonumber(r.attempts) or 0) + 1
  -- a call id per placed call (an attempt given back, worker_full, is placed again under a new id)
  local dials = redis.call('HINCRBY', CP.record_key(id, n), 'dials', 1)
  local cid = string.format('%s.%s.%d', id, n, dials)
  local vars = {}
  local ok, rv = pcall(cjson.decode, r.variables or '{}')
  if ok and type(rv) == 'table' then for name, v in pairs(rv) do vars[name] = v end end
  vars['campaign.id'] = id
  vars['campaign.record'] = id .. ':' .. n
  vars['campaign.name'] = r.name or ''
  vars['campaign.attempt'] = tostring(attempt)
  local spec = {purpose = 'campaign', campaign = id, record = id .. ':' .. n, plan = c.plan, number = r.number,
                caller_id = c.caller_id, hotline = c.hotline, language = c.language, ring_s = tonumber(c.ring_s),
                queue = c.queue, variables = cjson.encode(vars)}
  local w, err = DO.start(cid, spec)
  if not w then
    return nil, err
  end
  set_record_state(id, n, r.state, 'dialing', {'attempts', attempt, 'last_call_id', cid, 'retry_at', ''})
  return cid
end

-- One run of the dialler at NOW. `open` = {campaign id -> list of its open zone numbers} for the
-- campaigns with a calling window (one without a window is always open; one with a window missing
-- from `open` is closed this tick). At most `budget` calls in all. Returns {placed, stopped early
-- because no worker had a free slot (0/1), progress events sent}.
function CP.tick(open, budget)
  local placed, unavailable = 0, 0
  local running = redis.call('SMEMBERS', k('campaigns', 'running'))
  table.sort(running)
  for _, id in ipairs(running) do
    if placed >= budget or unavailable == 1 then break end
    local key = CP.key(id)
    local c = hgetall(key)
    if c.state ~= 'running' then
      redis.call('SREM', k('campaigns', 'running'), id)
    else
      local pacing = cjson.decode(c.pacing)
      local rate = tonumber(pacing.rate_per_s) or 1
      local cap = math.max(1, rate)
      local tokens = tonumber(c.tokens) or 0
      local at = tonumber(c.tokens_at) or NOW
      if NOW > at then
        tokens = math.min(cap, tokens + rate * (NOW - at) / 1000.0)
        at = NOW
      end
      local n_dialing = tonumber(c['count:dialing'] or '0') or 0
      local live = n_dialing + (tonumber(c['count:answered'] or '0') or 0)
      local room = math.min(math.floor(tokens), (tonumber(pacing.max_concurrent) or 1) - live, budget - placed)
      if pacing.mode == 'progressive' then
        local skill = pacing.skill or ''
        if skill == '' then skill = c.queue or '' end
        local avail = skill ~= '' and redis.call('ZCARD', k('skill', skill, 'idle')) or 0
        room = math.min(room, math.floor(avail * (tonumber(pacing.ratio) or 1)) - n_dialing)
        -- customers who answered already wait in the queue for an agent: no new call until they are taken
        if (c.queue or '') ~= '' and redis.call('ZCARD', k('queue', c.queue, 'waiting')) > 0 then room = 0 end
      end
      local zones = cjson.decode(c.zones or '[""]')
      local open_zones = {}
      if (c.window or '') == '' then
        for z = 0, #zones - 1 do open_zones[#open_zones + 1] = z end
      else
        for _, z in ipairs(open[id] or {}) do
          if type(z) == 'number' and z >= 0 and z < #zones then open_zones[#open_zones + 1] = z end
        end
      end
      if room > 0 and #open_zones > 0 then
        -- the due records of the open zones, earliest first
        local cands = {}
        for _, z in ipairs(open_zones) do
          local got = redis.call('ZRANGEBYSCORE', CP.due_key(id, z), '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, room)
          for i = 1, #got, 2 do cands[#cands + 1] = {tonumber(got[i + 1]), tonumber(got[i]), z} end
        end
        table.sort(cands, function(x, y)
          if x[1] ~= y[1] then return x[1] < y[1] end
          return x[2] < y[2]
        end)
        local used = 0
        for _, cand in ipairs(cands) do
          if used >= room then break end
          local score, n, z = cand[1], string.format('%d', cand[2]), cand[3]
          local dkey = CP.due_key(id, z)
          redis.call('ZREM', dkey, n)
          local r = hgetall(CP.record_key(id, n))
          if r.state and CP_WAITING[r.state] then
            if CP.dnc(r.number) then
              set_record_state(id, n, r.state, 'dnc', {'last_reason', 'dnc'})
            else
              local cid, err = dial_record(id, c, n, r, pacing)
              if cid then
                used = used + 1
                placed = placed + 1
                tokens = tokens - 1
              elseif type(err) == 'table' and string.find(err.err or '', '^worker%.unavailable') then
                redis.call('ZADD', dkey, score, n)  -- back at its place: no token spent
                unavailable = 1
                break
              else
                set_record_state(id, n, r.state, 'failed', {'last_outcome', 'failed',
                                                             'last_reason', string.sub(tostring(err and err.err), 1, 200)},
                                 'failed')
              end
            end
          end
        end
      end
      redis.call('HSET', key, 'tokens', tostring(tokens), 'tokens_at', at)
      -- every record final: the campaign is finished
      local fresh = hgetall(key)
      local cn = counts(fresh)
      if (tonumber(fresh.records) or 0) > 0 and cn.pending + cn.retry + cn.dialing + cn.answered == 0 then
        set_campaign_state(id, 'finished', 'dialler')
      end
    end
  end
  -- stopped campaigns: their waiting records cancelled, a batch a tick
  for _, id in ipairs(redis.call('SMEMBERS', k('campaigns', 'closing'))) do
    if close_some(id, CP_CLOSE_BATCH) then redis.call('SREM', k('campaigns', 'closing'), id) end
  end
  -- progress, at most once a second per campaign
  local sent = 0
  for _, id in ipairs(redis.call('SMEMBERS', k('campaigns', 'progress'))) do
    local key = CP.key(id)
    local c = hgetall(key)
    if not c.state then
      redis.call('SREM', k('campaigns', 'progress'), id)
    elseif NOW - (tonumber(c.progress_at) or 0) >= 1000 then
      redis.call('SREM', k('campaigns', 'progress'), id)
      redis.call('HSET', key, 'progress_at', NOW)
      emit('campaign.progress', {campaign_id = id, state = c.state, counts = counts(c)})
      sent = sent + 1
    end
  end
  return {placed, unavailable, sent}
end

-- --- the dialout hook -------------------------------------------------------------------------------

-- The result kept on a record when its answered call is over: outcome, reason, csat and the call's
-- variables (the campaign's and what the plan collected), at most CP_RESULT_MAX bytes.
local function result_of(cc, outcome, reason)
  local res = {outcome = outcome, reason = reason or '', call_id = cc.call_id or ''}
  if (cc.csat or '') ~= '' then res.csat = tonumber(cc.csat) end
  local ok, vars = pcall(cjson.decode, cc.variables or '{}')
  if ok and type(vars) == 'table' then res.variables = vars end
  local out = cjson.encode(res)
  if #out > CP_RESULT_MAX then
    res.variables = nil
    res.truncated = true
    out = cjson.encode(res)
  end
  return out
end

DO.owners.campaign = function(event, cid, cc, outcome, reason)
  local id, rid = cc.campaign or '', cc.record or ''
  local n = string.match(rid, '^CP[0-9]+:([0-9]+)$')
  if not n or not string.match(id, '^CP[0-9]+$') or string.sub(rid, 1, #id + 1) ~= id .. ':' then return end
  local rkey = CP.record_key(id, n)
  local r = redis.call('HMGET', rkey, 'state', 'last_call_id', 'attempts', 'zone')
  if not r[1] or r[2] ~= cid then return end
  local st = r[1]
  if event == 'answered' then
    if st == 'dialing' then set_record_state(id, n, st, 'answered', {'answered_at', NOW}, 'answered') end
  elseif event == 'ended' then
    if st == 'answered' then
      set_record_state(id, n, st, 'done', {'last_outcome', outcome or '', 'last_reason', reason or '',
                                           'result', result_of(cc, outcome, reason), 'done_at', NOW}, outcome)
    end
  elseif event == 'not_reached' and st == 'dialing' then
    local c = hgetall(CP.key(id))
    local attempts = tonumber(r[3]) or 1
    local f = {'last_outcome', outcome or '', 'last_reason', reason or ''}
    local retries = {}
    local ok, decoded = pcall(cjson.decode, c.retries or '{}')
    if ok and type(decoded) == 'table' then retries = decoded end
    local max_attempts = tonumber(retries.max_attempts) or 3
    if c.state == 'stopped' or c.state == 'finished' or not c.state then
      set_record_state(id, n, st, 'cancelled', f, outcome)
    elseif reason == 'worker_full' then
      -- the worker had no line for it after all: the customer was never dialled, the attempt does not
      -- count; its turn comes again in CP_GIVEN_BACK_MS
      local at = NOW + CP_GIVEN_BACK_MS
      f[#f + 1] = 'retry_at'; f[#f + 1] = at
      f[#f + 1] = 'attempts'; f[#f + 1] = math.max(0, attempts - 1)
      set_record_state(id, n, st, 'retry', f, outcome)
      redis.call('ZADD', CP.due_key(id, r[4] or '0'), at, n)
    elseif attempts >= max_attempts then
      set_record_state(id, n, st, 'failed', f, outcome)
    else
      local backoff = (type(retries.backoff_s) == 'table' and tonumber(retries.backoff_s[outcome])) or 600
      local mult = tonumber(retries.multiplier) or 2
      local at = NOW + math.floor(backoff * (mult ^ (attempts - 1)) * 1000)
      f[#f + 1] = 'retry_at'; f[#f + 1] = at
      set_record_state(id, n, st, 'retry', f, outcome)
      redis.call('ZADD', CP.due_key(id, r[4] or '0'), at, n)
    end
  end
end
