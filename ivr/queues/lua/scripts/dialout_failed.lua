-- An automated call did not reach the customer (lib/dialout.lua DO.not_reached).
-- A = call_id, offer_id, outcome (busy, no_answer, failed), reason, ttl seconds.
-- Returns the outcome, or false when the call was not dialing (ended meanwhile: nothing changes).
local outcome = A[3]
if outcome ~= 'busy' and outcome ~= 'no_answer' and outcome ~= 'failed' then
  return redis.error_reply('request.invalid unknown dialout outcome ' .. tostring(outcome))
end
return DO.not_reached(A[1], A[2], outcome, A[4], tonumber(A[5]))
