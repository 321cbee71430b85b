-- The agent holding a case's follow-up task declines it (ivr/queues/store.py case_task_decline): it
-- is available again (offered a waiting caller at once) and kept from this case for 10 minutes; the
-- case is offered to another agent. A = case id, agent id, reason, now (ms, '' = the server's).
-- Returns 1; errors case.not_found, case.task_gone (the agent does not hold this task).
local id = CS.check_id(A[1])
CS.clock(A[4])
local aid = CS.check_name('agent_id', A[2], 64)
local reason = CS.check_name('reason', A[3], 64)
if reason == '' then CS.fail('invalid', 'reason is empty') end
local c = CS.load(id)
if c.task_agent ~= aid or redis.call('HGET', k('agent', aid), 'task') ~= id then
  CS.fail('task_gone', 'agent ' .. aid .. ' holds no follow-up task for ' .. id)
end
CS.task_back(id, aid, reason, true)
return 1
