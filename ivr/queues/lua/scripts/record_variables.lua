-- Merge variables (a JSON object of strings, checked by the caller) into the call record's `variables`.
-- A = call_id, variables JSON, the most bytes the merged JSON may take. Returns the merged JSON.
local cid, max = A[1], tonumber(A[3])
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
local cur = cjson.decode(redis.call('HGET', ckey, 'variables') or '{}')
for name, value in pairs(cjson.decode(A[2])) do cur[name] = value end
local out = cjson.encode(cur)
if #out > max then return redis.error_reply('record.too_large the call variables would exceed ' .. max .. ' bytes') end
redis.call('HSET', ckey, 'variables', out)
return out
