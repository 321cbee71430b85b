-- A dial plan's answers for a case (the case_update node; ivr/queues/store.py case_answers): merged
-- into the case and the call record; an unsolved answer reopens a resolved or closed case.
-- A = case id, call id ('' = none), answers (JSON object of texts), reopen due (ms, '' = no reopen),
-- by, now (ms, '' = the server's). Returns {'1' when it reopened the case else '0', the case (JSON)}.
local id = CS.check_id(A[1])
CS.clock(A[6])
local ok, answers = pcall(cjson.decode, A[3])
if not ok or type(answers) ~= 'table' then CS.fail('invalid', 'answers must be a JSON object') end
local due = nil
if A[4] ~= '' then due = CS.ms('due_at', A[4]) end
local reopened = CS.answers(id, A[2], answers, due, CS.check_len('by', A[5], 100, 100))
return {reopened and '1' or '0', CS.view(id)}
