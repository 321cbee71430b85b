-- Move a case to another status (ivr/queues/store.py set_case_status) through the one setter.
-- A = case id, status, by, due_at (ms; required to reopen, '' otherwise), now (ms, '' = the server's),
-- and for a close with a follow-up (回访; '' = none): mode (task | call), at (ms), plan id, attempts,
-- retry ms, ring seconds. Returns the case (JSON).
local id = CS.check_id(A[1])
local now = CS.clock(A[5])
if not CASE_TRANSITIONS[A[2]] then CS.fail('invalid', 'unknown status') end
local due = nil
if A[4] ~= '' then due = CS.ms('due_at', A[4]) end
local by = CS.check_len('by', A[3], 100, 100)
if (A[6] or '') ~= '' and A[2] ~= 'closed' then CS.fail('invalid', 'only closing a case schedules a follow-up') end
set_case_status(id, A[2], by, now, due)
if (A[6] or '') ~= '' then
  CS.followup_schedule(id, A[6], CS.ms('at', A[7]), A[8], tonumber(A[9]) or 1, tonumber(A[10]) or 3600000,
                       tonumber(A[11]) or 30, by)
end
return CS.view(id)
