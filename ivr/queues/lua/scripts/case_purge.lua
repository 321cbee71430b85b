-- Delete closed cases past their retention (worker housekeeping; ivr/queues/store.py purge_closed_cases):
-- lib/cases.lua CS.purge_closed. A = closed before (ms), limit. Returns how many were deleted.
local before, limit = tonumber(A[1]), tonumber(A[2])
if not before or before < 0 then CS.fail('invalid', 'before must be an epoch time in ms') end
if not limit or limit < 1 or limit > 1000 then CS.fail('invalid', 'limit must be 1-1000') end
return CS.purge_closed(math.floor(before), math.floor(limit))
