-- Read only: where a waiting call stands in its queue and what its wait estimate needs.
-- A = call_id. Returns false when the call is not waiting (in the IVR, offered, connected, ended),
-- else {position (1-based), callers waiting, gap_ms, last_departure, departures, aht_ms, handled,
-- staffed agents, now ms}; the history fields are '' when the queue has none.
local cid = A[1]
local c = redis.call('HMGET', k('call', cid), 'state', 'queue', 'skill')
if c[1] ~= 'queued' or not c[2] then return false end
local wkey = k('queue', c[2], 'waiting')
local rank = redis.call('ZRANK', wkey, cid)
if not rank then return false end
local s = redis.call('HMGET', k('queue', c[2], 'stats'), 'gap_ms', 'last_departure', 'departures', 'aht_ms', 'handled')
return {rank + 1, redis.call('ZCARD', wkey), s[1] or '', s[2] or '', s[3] or '', s[4] or '', s[5] or '',
        redis.call('SCARD', k('skill', c[3] or c[2], 'staffed')), NOW}
