-- The edge's registrations of agents' phones, from the supervisor's poll (ivr/runtime/phones.py).
-- A = stale_after_ms, JSON {agent_id: live contacts} of every AOR with a binding (the whole picture:
-- an agent left out has no registration). Each one found counts as registered until NOW +
-- stale_after_ms; an available agent whose phone just became reachable is matched with a waiting
-- caller at once. Returns the number of offers made.
local until_ms = NOW + tonumber(A[1])
local found = cjson.decode(A[2])
local set = k('phones', 'registered')
for _, aid in ipairs(redis.call('SMEMBERS', set)) do
  if found[aid] == nil then
    redis.call('SREM', set, aid)
    if redis.call('EXISTS', k('agent', aid)) == 1 then
      redis.call('HSET', k('agent', aid), 'phone_contacts', 0)
    end
  end
end
local offers = 0
for aid, n in pairs(found) do
  local key = k('agent', aid)
  if redis.call('EXISTS', key) == 1 then
    local was = R.phone_ready(aid)
    redis.call('HSET', key, 'phone_contacts', tonumber(n) or 0, 'phone_until', until_ms)
    redis.call('SADD', set, aid)
    if not was and redis.call('HGET', key, 'state') == 'available' and match_agent(aid) then
      offers = offers + 1
    end
  end
end
return offers
