-- The do-not-call list (a SET of digests of normalised numbers). A = op (add, remove, check),
-- numbers (JSON list, normalised by the store, at most 10000). Returns how many were added /
-- removed, or (check) a list of 0/1 per number.
local ok, numbers = pcall(cjson.decode, A[2])
if not ok or type(numbers) ~= 'table' or #numbers > 10000 then CP.fail('invalid', 'numbers must be a JSON list') end
local op, out, key = A[1], {}, k('dnc')
local changed = 0
for _, number in ipairs(numbers) do
  if type(number) ~= 'string' then CP.fail('invalid', 'a number is not a string') end
  local d = CP.digest(number)
  if op == 'add' then
    changed = changed + redis.call('SADD', key, d)
  elseif op == 'remove' then
    changed = changed + redis.call('SREM', key, d)
  elseif op == 'check' then
    out[#out + 1] = redis.call('SISMEMBER', key, d)
  else
    CP.fail('invalid', 'unknown op')
  end
end
if op == 'check' then return out end
return changed
