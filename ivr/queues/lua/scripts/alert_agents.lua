-- Read only: agents per skill and state, in one pass over the agents (for every queue's staffing
-- figures at once). Returns JSON {skill: {state: agents}}.
local counts = {}
for _, aid in ipairs(redis.call('SMEMBERS', k('agents'))) do
  local a = redis.call('HMGET', k('agent', aid), 'state', 'skills')
  if a[1] then
    for skill, _ in pairs(cjson.decode(a[2] or '{}')) do
      local c = counts[skill]
      if not c then c = {}; counts[skill] = c end
      c[a[1]] = (c[a[1]] or 0) + 1
    end
  end
end
if next(counts) == nil then return '{}' end
return cjson.encode(counts)
