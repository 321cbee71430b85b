-- The deadline scan (worker housekeeping, ivr/queues/store.py case_deadlines): open or reopened
-- cases whose due time passed are marked overdue, once each (case.overdue). A = limit, now (ms,
-- '' = the server's). Returns how many were marked.
CS.clock(A[2])
local limit = tonumber(A[1])
if not limit or limit < 1 or limit > 1000 then CS.fail('invalid', 'limit must be 1-1000') end
return CS.mark_overdue(math.floor(limit))
