-- Follow-ups (回访) whose time came (worker housekeeping; ivr/queues/store.py case_followups): each
-- started as an automated call or offered as an agent's task (lib/cases.lua CS.followups_due).
-- A = limit, now (ms, '' = the server's), caller id, skill, task timeout ms, allow (JSON array of Lua
-- patterns, calls.outbound_allow: a number matching none fails, number_not_allowed; '' = no check).
-- Returns how many started.
CS.clock(A[2])
local limit = tonumber(A[1])
if not limit or limit < 1 or limit > 1000 then CS.fail('invalid', 'limit must be 1-1000') end
local timeout = tonumber(A[5])
if not timeout or timeout < 1000 then CS.fail('invalid', 'the task timeout must be at least 1 s') end
return CS.followups_due(math.floor(limit), A[3], A[4], timeout, CS.allow_arg(A[6]))
