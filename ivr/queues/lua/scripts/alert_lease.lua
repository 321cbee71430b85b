-- Take or renew the evaluator's lease: A[1] owner, A[2] lease ms. Returns 1 when `owner` holds it now.
local key = k('alerts', 'lease')
local holder = redis.call('GET', key)
if holder == A[1] then
  redis.call('PEXPIRE', key, tonumber(A[2]))
  return 1
end
if not holder then
  redis.call('SET', key, A[1], 'PX', tonumber(A[2]))
  return 1
end
return 0
