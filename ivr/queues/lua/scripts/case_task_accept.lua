-- An agent accepts the follow-up task it holds (ivr/queues/store.py case_task_accept): in the same
-- step the click-to-dial of the customer (lib/originate.lua), the call linked to the case (the
-- record's `case_id`: its answer contacts the case, originate_connected.lua), the task cleared.
-- A = case id, agent id, call id, caller id, hotline, by, now (ms, '' = the server's).
-- Returns {call_id, state, worker}; errors case.not_found, case.task_gone (the agent does not hold
-- this task: another agent's, declined, expired, or the case no longer waits), case.no_number,
-- and those of originate_call (agent.no_phone, worker.unavailable...).
local id = CS.check_id(A[1])
CS.clock(A[7])
local aid = CS.check_name('agent_id', A[2], 64)
local cid = A[3]
local c = CS.load(id)
local a = redis.call('HMGET', k('agent', aid), 'state', 'task')
if c.task_agent ~= aid or a[2] ~= id or a[1] ~= 'reserved' or (tonumber(c.task_expires) or 0) < NOW then
  CS.fail('task_gone', 'agent ' .. aid .. ' holds no follow-up task for ' .. id)
end
if (c.customer or '') == '' then CS.fail('no_number', id .. ' has no customer number to dial') end
local w, err = originate_call(cid, aid, c.customer, A[4], A[5], '', A[6], true)
if not w then return err end
CS.task_accepted(id, c, aid, cid)
return {cid, 'dialing', w}
