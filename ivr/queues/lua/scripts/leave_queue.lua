-- The caller stops waiting (the queue's max_wait passed) unless an agent is already being offered
-- the call. A = call_id, reason. Returns 1 when the call left its queue (state back to `ivr`),
-- 0 when it is not waiting (an offer is in flight, or it was already connected or ended).
local cid, reason = A[1], A[2]
local ckey = k('call', cid)
local c = hgetall(ckey)
if c.state ~= 'queued' then return 0 end
R.unqueue(cid)
stats_left_queue(c.queue, reason)
set_call_state(ckey, 'ivr', 'left_queue_at', NOW, 'left_reason', reason)
emit('call.left_queue', {call_id = cid, queue = c.queue, reason = reason,
                         waited_s = (NOW - tonumber(c.queued_at or NOW)) / 1000.0})
return 1
