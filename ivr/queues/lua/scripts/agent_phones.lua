-- The edge's registrations of agents' phones, from a poller (ivr/runtime/phones.py: the `ivr run`
-- supervisor, or `ivr phones` next to each edge of a multi-host deployment).
-- A = stale_after_ms, JSON {agent_id: live contacts} of every AOR with a binding (the whole picture
-- of that edge: an agent left out has no registration there), source (the poller's name).
--
-- Several pollers may run: each writes its own picture (k('phones', 'source', name)), and an agent's
-- phone is registered while any picture that is still fresh (younger than stale_after_ms) has a
-- binding for it, with the largest number of devices any of them counts. Two pollers of the same
-- edge write the same picture (idempotent: the same count, no event); with pollers of two edges
-- (active and standby) the edge that holds no registration never unregisters the other's phones.
-- The agent hash gets that count (phone_contacts) and the newest such picture's expiry (phone_until).
-- agent.phone is emitted when an agent's phone becomes registered, unregistered, or its number of
-- registered devices changes; an available agent whose phone just became reachable is matched with
-- a waiting caller at once. Returns the number of offers made.
local stale_ms = tonumber(A[1])
local until_ms = NOW + stale_ms
local found = cjson.decode(A[2])
local source = A[3]
local set = k('phones', 'registered')
local sources = k('phones', 'sources')

-- this poller's picture replaces its previous one
local mine = k('phones', 'source', source)
redis.call('DEL', mine)
for aid, n in pairs(found) do
  if (tonumber(n) or 0) > 0 and redis.call('EXISTS', k('agent', aid)) == 1 then
    redis.call('HSET', mine, aid, tonumber(n))
  end
end
redis.call('PEXPIRE', mine, stale_ms + 60000)
redis.call('ZADD', sources, until_ms, source)
-- pictures of pollers that stopped are forgotten
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', sources, '-inf', NOW)) do
  redis.call('DEL', k('phones', 'source', gone))
end
redis.call('ZREMRANGEBYSCORE', sources, '-inf', NOW)
local fresh = redis.call('ZRANGE', sources, 0, -1, 'WITHSCORES')

-- every agent some picture names, and every agent registered so far
local agents = {}
for _, aid in ipairs(redis.call('SMEMBERS', set)) do agents[aid] = true end
for aid, _ in pairs(found) do agents[aid] = true end

local offers = 0
for aid, _ in pairs(agents) do
  local key = k('agent', aid)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', set, aid)
  else
    local total, last = 0, 0
    for i = 1, #fresh, 2 do
      local n = tonumber(redis.call('HGET', k('phones', 'source', fresh[i]), aid) or 0) or 0
      if n > 0 then
        total = math.max(total, n)
        last = math.max(last, tonumber(fresh[i + 1]))
      end
    end
    -- what the desktops were told last (a stale picture is announced, and zeroed, by housekeeping)
    local before = tonumber(redis.call('HGET', key, 'phone_contacts')) or 0
    local was = R.phone_ready(aid)
    if total > 0 then
      redis.call('HSET', key, 'phone_contacts', total, 'phone_until', last)
      redis.call('SADD', set, aid)
    else
      redis.call('HSET', key, 'phone_contacts', 0)
      redis.call('SREM', set, aid)
    end
    if total ~= before then
      emit('agent.phone', {agent_id = aid, registered = total > 0, contacts = total,
                           reason = total == 0 and 'unregistered' or (before == 0 and 'registered' or 'devices')})
    end
    if total > 0 and not was and redis.call('HGET', key, 'state') == 'available' and match_agent(aid) then
      offers = offers + 1
    end
  end
end
return offers
