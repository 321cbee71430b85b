-- Skill routing (see ivr/queues/routing.py for the model): the indexes of available agents, the route
-- ZSETs of waiting callers, matching both ways by strategy, and escalation. Appended after
-- prelude.lua; the prelude calls these through the table R it declares.

local MAX_LEVEL = 5
local SCAN = 32  -- agents read per round trip when scanning an index
-- Callers housekeeping escalates per run: scripts stay short (Redis runs one at a time); the
-- housekeeper calls the escalate script again while a batch comes back full.
local ESCALATE_BATCH = 20

local function level_of(v)
  return math.max(1, math.min(MAX_LEVEL, math.floor(tonumber(v) or 1)))
end

-- Skills and languages of an agent, read once per script run.
local profiles = {}
local function profile(aid)
  local p = profiles[aid]
  if p == nil then
    local f = redis.call('HMGET', k('agent', aid), 'skills', 'languages')
    p = {skills = cjson.decode(f[1] or '{}'), langs = {}}
    for _, l in ipairs(cjson.decode(f[2] or '[]')) do p.langs[l] = true end
    profiles[aid] = p
  end
  return p
end

-- Does agent `aid` have every skill at `m` or better, and speak `lang` ('' = any)?
local function fits(aid, skills, m, lang)
  local p = profile(aid)
  for _, s in ipairs(skills) do
    local lv = tonumber(p.skills[s])
    if not lv or lv < m then return false end
  end
  return lang == '' or p.langs[lang] == true
end

-- Can an offer reach agent `aid`'s phone? Always for a static SIP URI; for a phone that registers
-- at the edge (phone = 'registered') only while the supervisor's last poll of the edge found a
-- binding and that poll is recent (phone_until, ms): an edge or supervisor that stops answering makes
-- such agents unroutable after edge.registrar.stale_after_s. They stay available and staffed.
function R.phone_ready(aid)
  local f = redis.call('HMGET', k('agent', aid), 'phone', 'phone_contacts', 'phone_until')
  if f[1] ~= 'registered' then return true end
  return (tonumber(f[2]) or 0) > 0 and (tonumber(f[3]) or 0) > NOW
end

-- Put agent `aid` in (on) or take it out of the available-agent indexes of `skills` ({skill: level}).
function R.index_agent(aid, skills, on)
  profiles[aid] = nil
  for s, lv in pairs(skills) do
    local L = level_of(lv)
    if on then
      redis.call('ZADD', k('skill', s, 'idle'), NOW, aid)
      redis.call('ZADD', k('skill', s, 'idle', L), NOW, aid)
      redis.call('ZADD', k('skill', s, 'ready'), 0, aid)
    else
      redis.call('ZREM', k('skill', s, 'idle'), aid)
      redis.call('ZREM', k('skill', s, 'idle', L), aid)
      redis.call('ZREM', k('skill', s, 'ready'), aid)
    end
  end
end

-- Route ids: "<m>/<language or *>/<skill>+<skill>" with the skills sorted.
local function route_id(skills, m, lang)
  local sorted = {}
  for i, s in ipairs(skills) do sorted[i] = s end
  table.sort(sorted)
  return m .. '/' .. (lang == '' and '*' or lang) .. '/' .. table.concat(sorted, '+'), sorted[1]
end

local parsed = {}
local function parse_route(id)
  local r = parsed[id]
  if r == nil then
    local m, lang, list = string.match(id, '^(%d+)/([^/]+)/(.+)$')
    r = {m = tonumber(m), lang = (lang == '*') and '' or lang, skills = {}}
    for s in string.gmatch(list, '[^+]+') do r.skills[#r.skills + 1] = s end
    parsed[id] = r
  end
  return r
end

-- Keep route `id`'s entry in its first skill's index scored by its head caller (gone when empty).
local function refresh_route(id, first)
  local head = redis.call('ZRANGE', k('route', id, 'waiting'), 0, 0, 'WITHSCORES')
  if #head == 0 then
    redis.call('ZREM', k('skill', first, 'routes'), id)
  else
    redis.call('ZADD', k('skill', first, 'routes'), head[2], id)
  end
end

local function wait_score(prio, queued_at)
  return (9 - tonumber(prio or 0)) * 1e13 + tonumber(queued_at)
end

-- Put a call (state queued, fields route/queue/priority/queued_at/escalate_at set) in its queue and
-- route ZSETs, and in the escalation schedule when it has a next stage.
function R.queue_call(cid)
  local c = redis.call('HMGET', k('call', cid), 'queue', 'priority', 'queued_at', 'route', 'escalate_at')
  local route = cjson.decode(c[4])
  local score = wait_score(c[2], c[3])
  redis.call('ZADD', k('queue', c[1], 'waiting'), score, cid)
  for _, alt in ipairs(route.alts) do
    local id, first = route_id(alt.skills, alt.m, route.lang)
    redis.call('ZADD', k('route', id, 'waiting'), score, cid)
    redis.call('ZADD', k('skill', first, 'routes'), 'LT', score, id)  -- a new head scores lower
  end
  if c[5] then redis.call('ZADD', k('escalations'), tonumber(c[5]), cid) end
end

-- Take a call out of every waiting index it may be in (harmless when it is in none).
function R.unqueue(cid)
  local c = redis.call('HMGET', k('call', cid), 'queue', 'route')
  if c[1] then redis.call('ZREM', k('queue', c[1], 'waiting'), cid) end
  redis.call('ZREM', k('escalations'), cid)
  if not c[2] then return end
  local route = cjson.decode(c[2])
  for _, alt in ipairs(route.alts) do
    local id, first = route_id(alt.skills, alt.m, route.lang)
    if redis.call('ZREM', k('route', id, 'waiting'), cid) == 1 then refresh_route(id, first) end
  end
end

-- The first agent of index `zkey` (a ZSET by idle time) that meets the requirement, and its score.
local function first_fit(zkey, skills, m, lang)
  local start = 0
  while true do
    local ids = redis.call('ZRANGE', zkey, start, start + SCAN - 1, 'WITHSCORES')
    if #ids == 0 then return nil end
    for i = 1, #ids, 2 do
      if fits(ids[i], skills, m, lang) and R.phone_ready(ids[i]) then return ids[i], tonumber(ids[i + 1]) end
    end
    start = start + SCAN
  end
end

-- The first agent in id order in (lo, hi] of index `zkey` that meets the requirement.
local function first_fit_lex(zkey, lo, hi, skills, m, lang)
  local off = 0
  while true do
    local ids = redis.call('ZRANGEBYLEX', zkey, lo, hi, 'LIMIT', off, SCAN)
    if #ids == 0 then return nil end
    for _, aid in ipairs(ids) do
      if fits(aid, skills, m, lang) and R.phone_ready(aid) then return aid end
    end
    off = off + SCAN
  end
end

-- The skill of `skills` with the fewest available agents: the smallest index to scan.
local function rarest(skills)
  local best, n = skills[1], nil
  for _, s in ipairs(skills) do
    local c = redis.call('ZCARD', k('skill', s, 'idle'))
    if n == nil or c < n then best, n = s, c end
  end
  return best
end

-- The available agent `strategy` picks for one alternative, and a rank (smaller is better).
local function pick_agent(alt, lang, strategy, queue, index)
  local skills, m = alt.skills, tonumber(alt.m)
  if strategy == 'best_proficiency' then
    for L = MAX_LEVEL, m, -1 do
      local aid, since = first_fit(k('skill', skills[1], 'idle', L), skills, m, lang)
      if aid then return aid, (MAX_LEVEL - L) * 1e13 + since end
    end
    return nil
  elseif strategy == 'round_robin' then
    local zkey = k('skill', rarest(skills), 'ready')
    local last = redis.call('GET', k('queue', queue, 'rr'))
    local aid
    if last then
      aid = first_fit_lex(zkey, '(' .. last, '+', skills, m, lang)
        or first_fit_lex(zkey, '-', '[' .. last, skills, m, lang)
    else
      aid = first_fit_lex(zkey, '-', '+', skills, m, lang)
    end
    return aid, index
  end
  local s = rarest(skills)  -- longest_idle
  local best, best_since = nil, nil
  for L = m, MAX_LEVEL do
    local aid, since = first_fit(k('skill', s, 'idle', L), skills, m, lang)
    if aid and (best_since == nil or since < best_since) then best, best_since = aid, since end
  end
  return best, best_since
end

-- Offer waiting call `cid` to the agent its strategy picks among those meeting one of its
-- alternatives. Returns the offer (JSON) or false.
function R.match_call(cid)
  local c = redis.call('HMGET', k('call', cid), 'state', 'queue', 'route')
  if c[1] ~= 'queued' or not c[3] then return false end
  local route = cjson.decode(c[3])
  local strategy = route.strategy or 'longest_idle'
  local best, best_rank = nil, nil
  for i, alt in ipairs(route.alts) do
    local aid, rank = pick_agent(alt, route.lang or '', strategy, c[2], i)
    if aid and (best_rank == nil or rank < best_rank) then best, best_rank = aid, rank end
  end
  if not best then return false end
  if strategy == 'round_robin' then redis.call('SET', k('queue', c[2], 'rr'), best) end
  return offer(cid, best, c[2])
end

-- The best waiting caller agent `aid` qualifies for: highest priority, then longest waiting. Per
-- skill of the agent, the routes listed under it are walked in the order of their head callers; the
-- walk stops at the first route the agent meets, or once heads come after the best caller found so far.
local function best_for(aid)
  local p = profile(aid)
  local best, best_score = nil, nil
  for s, _ in pairs(p.skills) do
    local off, done = 0, false
    while not done do
      local ids = redis.call('ZRANGE', k('skill', s, 'routes'), off, off + SCAN - 1, 'WITHSCORES')
      if #ids == 0 then break end
      for i = 1, #ids, 2 do
        local score = tonumber(ids[i + 1])
        if best_score ~= nil and score > best_score then done = true; break end
        local r = parse_route(ids[i])
        if fits(aid, r.skills, r.m, r.lang) then
          local head = redis.call('ZRANGE', k('route', ids[i], 'waiting'), 0, 0)[1]
          if best_score == nil or score < best_score or head < best then best, best_score = head, score end
          done = true
          break
        end
      end
      off = off + SCAN
    end
  end
  return best
end

-- Offer agent `aid` (available) the best waiting caller it qualifies for. A callback no worker can
-- dial now steps out of the indexes (offer returns false): the next best caller gets the agent.
function R.match_agent(aid)
  if not R.phone_ready(aid) then return false end
  for _ = 1, 16 do
    local best = best_for(aid)
    if best == nil then return false end
    local o = offer(best, aid, redis.call('HGET', k('call', best), 'queue'))
    if o then return o end
  end
  return false
end

-- Is an agent meeting one of `route`'s alternatives logged in (any state but offline)?
function R.staffed(route)
  for _, alt in ipairs(route.alts) do
    local s, n = nil, nil
    for _, skill in ipairs(alt.skills) do
      local c = redis.call('SCARD', k('skill', skill, 'staffed'))
      if n == nil or c < n then s, n = skill, c end
    end
    if n > 0 then
      for _, aid in ipairs(redis.call('SMEMBERS', k('skill', s, 'staffed'))) do
        if fits(aid, alt.skills, tonumber(alt.m), route.lang or '') then return true end
      end
    end
  end
  return false
end

local function joined(skills)
  return table.concat(skills, '+')
end

-- Apply the escalation stages of waiting call `cid` that are due; emits call.escalated for each and
-- tries to match the caller. Returns the number of stages applied.
local function escalate(cid)
  local ckey = k('call', cid)
  local f = redis.call('HMGET', ckey, 'state', 'stages', 'queued_at', 'stage', 'route', 'queue')
  local c = {state = f[1], stages = f[2], queued_at = f[3], stage = f[4], route = f[5], queue = f[6]}
  if c.state ~= 'queued' or not c.stages then return 0 end
  local stages = cjson.decode(c.stages)
  local queued_at = tonumber(c.queued_at)
  local stage = tonumber(c.stage or 0)
  local route = cjson.decode(c.route)
  local queue = c.queue
  local applied = 0
  R.unqueue(cid)
  while #stages > 0 and queued_at + stages[1].after_s * 1000 <= NOW do
    local st = table.remove(stages, 1)
    local from = queue
    stage = stage + 1
    route.alts = st.alts
    if st.strategy then route.strategy = st.strategy end
    if st.queue then queue = st.queue end
    applied = applied + 1
    local skills = {}
    for _, alt in ipairs(st.alts) do skills[#skills + 1] = joined(alt.skills) .. '>=' .. alt.m end
    emit('call.escalated', {call_id = cid, stage = stage, queue = queue, from_queue = from,
                            alternatives = skills, strategy = route.strategy or 'longest_idle',
                            waited_s = (NOW - queued_at) / 1000.0})
  end
  redis.call('HSET', ckey, 'route', cjson.encode(route), 'stages', cjson.encode(stages), 'stage', stage,
             'queue', queue, 'skill', route.alts[1].skills[1])
  redis.call('HSET', k('queues'), queue, joined(route.alts[1].skills))
  if #stages > 0 then
    redis.call('HSET', ckey, 'escalate_at', queued_at + math.floor(stages[1].after_s * 1000))
  else
    redis.call('HDEL', ckey, 'escalate_at')
  end
  R.queue_call(cid)
  R.match_call(cid)
  return applied
end

-- Escalate every waiting call whose next stage is due (at most `limit` calls). Returns the count.
function R.escalate_due(limit)
  local n = 0
  for _, cid in ipairs(redis.call('ZRANGEBYSCORE', k('escalations'), '-inf', NOW, 'LIMIT', 0, limit)) do
    redis.call('ZREM', k('escalations'), cid)
    if escalate(cid) > 0 then n = n + 1 end
  end
  return n
end

-- An available agent of `queue` (its skills as last enqueued there, else the skill of its name; any
-- proficiency, longest idle), for a consult to a queue: picked now, nobody waits. nil when none.
function R.pick_for_queue(queue)
  local skills = redis.call('HGET', k('queues'), queue)
  if not skills or skills == '' then skills = queue end
  local list = {}
  for s in string.gmatch(skills, '[^+]+') do list[#list + 1] = s end
  return (pick_agent({skills = list, m = 1}, '', 'longest_idle', queue, 1))
end
