-- The call is over, whatever state it was in. A = call_id, reason, wrapup seconds, ttl seconds,
-- resume window seconds (a caller hanging up while waiting keeps its place that long; '' = 0)
return finish_call(A[1], A[2], tonumber(A[3]), tonumber(A[4]), false, tonumber(A[5] or '') or 0)
