-- A recording leaves the index (its file is already gone from the store). A = id, reason
-- (retention | admin), by. Returns 0 when it was not indexed.
local id, reason, by = A[1], A[2], A[3]
local key = k('rec', id)
local r = hgetall(key)
if not r.id then
  redis.call('ZREM', k('recs'), id)
  redis.call('ZREM', k('recs', 'expiry'), id)
  return 0
end
redis.call('DEL', key)
redis.call('ZREM', k('recs'), id)
redis.call('ZREM', k('recs', 'expiry'), id)
for _, aid in ipairs(cjson.decode(r.agents or '[]')) do redis.call('ZREM', k('agent', aid, 'recs'), id) end
if (r.queue or '') ~= '' then redis.call('ZREM', k('queue', r.queue, 'recs'), id) end
redis.call('LREM', k('transcribe', 'jobs'), 0, id)
QL.forget(id)  -- its transcript, quality and reviews go with it (lib/quality.lua)
local ckey = k('call', r.call_id or '')
if redis.call('HGET', ckey, 'recording_id') == id then
  redis.call('HDEL', ckey, 'recording_id', 'recording_ms', 'recording_sha256')
end
emit('recording.deleted', {recording_id = id, call_id = r.call_id or '', reason = reason, by = by})
return 1
