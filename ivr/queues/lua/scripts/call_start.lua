-- A new call entered a worker. A = call_id, worker, ani, dnis, hotline, language, plan_version, and
-- optionally how many of the caller's unfinished cases to return (a repeat caller, looked up in the
-- same round trip; the store checked the number). Returns NOW, or {NOW, 1, case JSON...} when cases
-- were asked for, {NOW, 0} when looking them up failed (the call goes on; the worker looks again).
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
local want = tonumber(A[8] or '') or 0
if want < 1 then return NOW end
local ok, cases = pcall(function()
  local out = {NOW, 1}
  for _, id in ipairs(CS.customer_cases(A[3], math.min(want, 20))) do out[#out + 1] = CS.view(id) end
  return out
end)
if not ok then return {NOW, 0} end
return cases
