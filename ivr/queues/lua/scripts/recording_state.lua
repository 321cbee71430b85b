-- A call's recording started, paused or resumed (the worker's recorder, after the bridge changed).
-- A = call_id, what (started | paused | resumed | stopped), by (an agent id, "policy" or "sensitive").
-- The call record's `recording` is on | paused (gone once stopped: the IVR part of a call whose queue
-- never records), so the desktop and the call view show it.
local cid, what, by = A[1], A[2], A[3]
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
if what == 'stopped' then
  redis.call('HDEL', ckey, 'recording')
  return ''
end
local state = ({started = 'on', paused = 'paused', resumed = 'on'})[what]
if not state then return redis.error_reply('request.invalid recording ' .. tostring(what)) end
redis.call('HSET', ckey, 'recording', state)
local agent = redis.call('HGET', ckey, 'agent_id') or ''
local data = {call_id = cid, agent_id = agent, by = by}
if what == 'started' then emit('recording.started', data)
elseif what == 'paused' then emit('recording.paused', data)
else emit('recording.resumed', data) end
return state
