-- Delete a campaign (draft, stopped or finished) and its records, `batch` records a run. A = id,
-- batch (1-5000). Returns the records left (0: the campaign is gone).
local c = CP.load(A[1])
if c.state ~= 'draft' and c.state ~= 'stopped' and c.state ~= 'finished' then
  CP.fail('bad_transition', A[1] .. ' is ' .. c.state .. ': stop it first')
end
local id, batch = A[1], tonumber(A[2]) or 1000
redis.call('HSET', CP.key(id), 'deleting', 1)
redis.call('ZREM', k('campaigns', 'index'), id)
local rkey = k('campaign', id, 'records')
local ns = redis.call('ZRANGE', rkey, 0, batch - 1)
for _, n in ipairs(ns) do redis.call('UNLINK', CP.record_key(id, n)) end
if #ns > 0 then redis.call('ZREM', rkey, unpack(ns)) end
local left = redis.call('ZCARD', rkey)
if left == 0 then
  local zones = cjson.decode(c.zones or '[""]')
  for z = 0, #zones - 1 do redis.call('UNLINK', CP.due_key(id, z)) end
  redis.call('UNLINK', k('campaign', id, 'numbers'), CP.key(id))
  redis.call('SREM', k('campaigns', 'running'), id)
  redis.call('SREM', k('campaigns', 'closing'), id)
  redis.call('SREM', k('campaigns', 'progress'), id)
  emit('campaign.deleted', {campaign_id = id})
end
return left
