-- Link a call to a case (ivr/queues/store.py link_case_call): last in the case's `calls`, and the
-- call record (when it exists) gets `case_id`; case.call_linked. Linking the last linked call again
-- changes nothing. A = case id, call id, by. Returns the case (JSON).
local id = CS.check_id(A[1])
local cid = CS.check_name('call_id', A[2], 64)
if cid == '' then CS.fail('invalid', 'call_id is required') end
local by = CS.check_len('by', A[3], 100, 100)
local key = k('case', id)
local c = CS.load(id)
if CS.link_call(id, c, cid) then
  redis.call('HSET', key, 'updated_at', NOW)
  redis.call('HINCRBY', key, 'version', 1)
  emit('case.call_linked', {case_id = id, call_id = cid, agent_id = c.owner or '', by = by})
end
return CS.view(id)
