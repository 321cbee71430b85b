-- Store the settled CRM match of a call's screen-pop, once: the first API instance to settle it
-- writes `crm` (JSON) on the record and emits call.crm_matched; later pops and replays read it
-- instead of asking the CRM again. A = call_id, crm JSON, status, lookup, record id, agent id.
-- Returns 1 when stored now, 0 when the call already had one (or has no record).
local cid = A[1]
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return 0 end
if redis.call('HSETNX', ckey, 'crm', A[2]) == 0 then return 0 end
emit('call.crm_matched', {call_id = cid, agent_id = A[6], status = A[3], lookup = A[4], record_id = A[5]})
return 1
