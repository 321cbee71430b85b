-- Start, pause, resume or stop a campaign (lib/campaigns.lua set_campaign_state). A = id, action
-- (start, pause, resume, stop), by, now. Returns the campaign. Stopping cancels its waiting
-- records (a batch now, the rest by the dialler's next ticks); calls under way finish.
CP.clock(A[4])
local c = CP.load(A[1])
local action = A[2]
local to
if action == 'start' then
  if c.state ~= 'draft' then CP.fail('bad_transition', A[1] .. ' is ' .. c.state .. ': only a draft starts') end
  to = 'running'
elseif action == 'resume' then
  if c.state ~= 'paused' then CP.fail('bad_transition', A[1] .. ' is ' .. c.state .. ': only a paused one resumes') end
  to = 'running'
elseif action == 'pause' then
  to = 'paused'
elseif action == 'stop' then
  to = 'stopped'
else
  CP.fail('invalid', 'unknown action ' .. tostring(action))
end
CP.set_state(A[1], to, A[3])
if to == 'stopped' and CP.close_some(A[1], 1000) then redis.call('SREM', k('campaigns', 'closing'), A[1]) end
return CP.view(A[1])
