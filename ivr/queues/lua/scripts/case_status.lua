-- Move a case to another status (ivr/queues/store.py set_case_status) through the one setter.
-- A = case id, status, by, due_at (ms; required to reopen, '' otherwise), now (ms, '' = the server's).
-- Returns the case (JSON).
local id = CS.check_id(A[1])
local now = CS.clock(A[5])
if not CASE_TRANSITIONS[A[2]] then CS.fail('invalid', 'unknown status') end
local due = nil
if A[4] ~= '' then due = CS.ms('due_at', A[4]) end
set_case_status(id, A[2], CS.check_len('by', A[3], 100, 100), now, due)
return CS.view(id)
