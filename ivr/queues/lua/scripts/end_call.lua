-- The call is over, whatever state it was in. A = call_id, reason, wrapup seconds, ttl seconds,
-- resume window seconds (a caller hanging up while waiting keeps its place that long; '' = 0), then
-- field, value pairs set on the record first (the journey, RTP figures: one round trip for the end)
local ckey = k('call', A[1])
if #A > 5 and redis.call('EXISTS', ckey) == 1 then
  for i = 6, #A - 1, 2 do redis.call('HSET', ckey, A[i], A[i + 1]) end
end
return finish_call(A[1], A[2], tonumber(A[3]), tonumber(A[4]), false, tonumber(A[5] or '') or 0)
