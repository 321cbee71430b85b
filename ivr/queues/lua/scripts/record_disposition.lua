-- An agent's disposition and notes on a call, forwarded to the CRM by the event.
-- A = call_id, disposition, notes, by (user id), crm_record_id ('' when none), agent ('' = the call's
-- agent): whose part of the call it disposes of. A call transferred on has a part per agent: each
-- is kept in `dispositions` ({agent: {disposition, notes, by, at}}); `disposition`/`notes` hold the last.
local cid = A[1]
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
local agent = A[6]
if not agent or agent == '' then agent = redis.call('HGET', ckey, 'agent_id') or '' end
local all = cjson.decode(redis.call('HGET', ckey, 'dispositions') or '{}')
if agent ~= '' then all[agent] = {disposition = A[2], notes = A[3], by = A[4], at = NOW} end
redis.call('HSET', ckey, 'disposition', A[2], 'notes', A[3], 'disposition_by', A[4], 'disposition_at', NOW)
if next(all) ~= nil then redis.call('HSET', ckey, 'dispositions', cjson.encode(all)) end
local data = {call_id = cid, agent_id = agent, disposition = A[2], notes = A[3], by = A[4]}
if A[5] ~= '' then
  redis.call('HSET', ckey, 'crm_record_id', A[5])
  data.crm_record_id = A[5]
end
emit('call.disposition', data)
return 1
