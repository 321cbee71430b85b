-- Follow-up tasks (worker housekeeping, ivr/queues/store.py case_offer_tasks): expired tasks go back,
-- then pending cases due within `before` are offered to an agent each (lib/cases.lua, "Follow-up
-- tasks"). A = before (ms), skill, timeout (ms), limit, now (ms, '' = the server's), allow (JSON array of
-- Lua patterns, calls.outbound_allow: a case whose number matches none is not offered; '' = no check).
-- Returns how many were offered.
CS.clock(A[5])
local before, timeout, limit = tonumber(A[1]), tonumber(A[3]), tonumber(A[4])
if not before or before < 0 or before > 366 * 86400000 then CS.fail('invalid', 'before_ms must be 0 to a year') end
if not timeout or timeout < 1000 or timeout > 86400000 then CS.fail('invalid', 'timeout_ms must be 1 s to a day') end
if not limit or limit < 1 or limit > 1000 then CS.fail('invalid', 'limit must be 1-1000') end
local skill = CS.check_name('skill', A[2], 64)
if skill == '' then CS.fail('invalid', 'skill is empty') end
return CS.offer_tasks(math.floor(before), skill, math.floor(timeout), math.floor(limit), CS.allow_arg(A[6]))
