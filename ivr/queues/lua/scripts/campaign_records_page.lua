-- A page of a campaign's records (read-only). A = id, state ('' = any), after (n; 0 = from the
-- first), limit (1-1000), budget (records looked at, at most). Returns {next after (0 = no more),
-- record JSON...}.
CP.load(A[1])
local id, state = A[1], A[2]
local after, limit, budget = tonumber(A[3]) or 0, tonumber(A[4]) or 50, tonumber(A[5]) or 5000
local out = {0}
local looked = 0
local rkey = k('campaign', id, 'records')
while looked < budget do
  local ns = redis.call('ZRANGEBYSCORE', rkey, '(' .. string.format('%d', after), '+inf', 'LIMIT', 0, 200)
  if #ns == 0 then return out end
  for _, n in ipairs(ns) do
    looked = looked + 1
    after = tonumber(n)
    local r = hgetall(CP.record_key(id, n))
    if r.state and (state == '' or r.state == state) then
      out[#out + 1] = cjson.encode(r)
      if #out - 1 >= limit then
        out[1] = after
        return out
      end
    end
    if looked >= budget then break end
  end
end
out[1] = after
return out
