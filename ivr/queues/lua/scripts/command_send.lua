-- Hand a command (JSON) to the inbox of the worker that owns call A[1]. A = call_id, command JSON.
-- Returns the worker's name; errors call.not_found (no record), call.ended (over), call.gone (on no
-- live worker: not yet placed, or its worker died and the call is about to be reaped).
local cid = A[1]
local c = redis.call('HMGET', k('call', cid), 'state', 'worker')
if not c[1] then return redis.error_reply('call.not_found ' .. cid) end
if c[1] == 'ended' then return redis.error_reply('call.ended ' .. cid) end
local w = c[2]
if not w or w == '' or redis.call('EXISTS', k('worker', w, 'alive')) == 0 then
  return redis.error_reply('call.gone ' .. cid .. ' is on no live worker')
end
redis.call('RPUSH', k('worker', w, 'inbox'), A[2])
return w
