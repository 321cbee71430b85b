-- A new call entered a worker. A = call_id, worker, ani, dnis, hotline, language, plan_version
local cid, worker = A[1], A[2]
local ckey = k('call', cid)
-- Started again while live (a retry whose first reply was lost): nothing changes.
local cur = redis.call('HMGET', ckey, 'state', 'worker', 'started_at')
if cur[1] and cur[1] ~= 'ended' and cur[2] == worker then return tonumber(cur[3]) end
create_call(ckey, 'ivr', 'call_id', cid, 'worker', worker, 'ani', A[3], 'dnis', A[4],
           'hotline', A[5], 'language', A[6], 'plan_version', A[7], 'started_at', NOW, 'journey', '{"steps":[]}')
index_call(cid, {started_at = NOW}, {})
redis.call('SADD', k('calls', 'active'), cid)
redis.call('SADD', k('worker', worker, 'calls'), cid)
emit('call.started', {call_id = cid, worker = worker, ani = A[3], dnis = A[4], hotline = A[5], language = A[6]})
return NOW
