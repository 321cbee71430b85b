-- The agent's leg ended while the caller stays in the plan (a survey after the talk): the agent goes
-- to wrap-up (or available) now, not when the whole call ends; the call is back in the IVR (state
-- `ivr`, `agent_left_at`), so end_call later does not touch the agent again.
-- A = call_id, wrapup seconds. Returns the agent id, or false when the call was not connected
-- (already handled, ended, or never answered).
local cid, wrapup = A[1], tonumber(A[2])
local ckey = k('call', cid)
local c = hgetall(ckey)
if c.state ~= 'connected' and c.state ~= 'held' then return false end
if c.held_at then redis.call('HINCRBYFLOAT', ckey, 'hold_s', (NOW - tonumber(c.held_at)) / 1000.0) end
redis.call('HDEL', ckey, 'held_at', 'muted')
set_call_state(ckey, 'ivr', 'agent_left_at', NOW)
record_handled(c.queue, NOW - tonumber(c.agent_since or c.answered_at or NOW) + wrapup * 1000, hold_ms(c),
               c.agent_id, wrapup * 1000)
release_agent(cid, c.agent_id, wrapup, '')
emit('call.agent_left', {call_id = cid, agent_id = c.agent_id or '', queue = c.queue or '',
                         talk_s = (NOW - tonumber(c.answered_at or NOW)) / 1000.0})
return c.agent_id or false
