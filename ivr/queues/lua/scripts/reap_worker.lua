-- A worker died: every call it held is recorded as lost and removed from queues; agents reserved
-- for or talking to those calls are released; its undelivered offers are dropped.
-- A = worker, wrapup seconds, ttl seconds. Returns the number of calls reaped.
return reap(A[1], tonumber(A[2]), tonumber(A[3]))
