-- Agents whose wrap-up time is over become available and are matched. No arguments.
local due = redis.call('ZRANGEBYSCORE', k('wrapup'), '-inf', NOW)
local offers = {}
for _, aid in ipairs(due) do
  set_agent_state(aid, 'available', 'wrapup_done')
  local o = match_agent(aid)
  if o then offers[#offers + 1] = o end
end
return offers
