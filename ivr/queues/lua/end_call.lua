-- The call is over, whatever state it was in. A = call_id, reason, wrapup seconds, ttl seconds
return finish_call(A[1], A[2], tonumber(A[3]), tonumber(A[4]), false)
