-- The agent's disposition and notes on a call, forwarded to the CRM by the event.
-- A = call_id, disposition, notes, by (user id), crm_record_id ('' when none)
local cid = A[1]
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
redis.call('HSET', ckey, 'disposition', A[2], 'notes', A[3], 'disposition_by', A[4], 'disposition_at', NOW)
local data = {call_id = cid, agent_id = redis.call('HGET', ckey, 'agent_id') or '',
              disposition = A[2], notes = A[3], by = A[4]}
if A[5] ~= '' then
  redis.call('HSET', ckey, 'crm_record_id', A[5])
  data.crm_record_id = A[5]
end
emit('call.disposition', data)
return 1
