-- A finished recording enters the index. A = fields (JSON object of strings, see Keys.recording),
-- transcribe ("1": queue it for the transcriber). The call record gets `recording_id`,
-- `recording_ms` (its duration) and `recording_sha256` (its checksum); the event
-- carries ids and the duration only (never a path or a number).
local rec, transcribe = cjson.decode(A[1]), A[2] == '1'
local id = rec.id
local key = k('rec', id)
if redis.call('EXISTS', key) == 1 then return redis.error_reply('recording.exists ' .. id) end
local flat = {}
for f, v in pairs(rec) do flat[#flat + 1] = f; flat[#flat + 1] = tostring(v) end
redis.call('HSET', key, unpack(flat))
redis.call('HSET', key, 'version', 1)
local started = tonumber(rec.started_at)
redis.call('ZADD', k('recs'), started, id)
redis.call('ZADD', k('recs', 'expiry'), tonumber(rec.delete_after), id)
for _, aid in ipairs(cjson.decode(rec.agents or '[]')) do
  redis.call('ZADD', k('agent', aid, 'recs'), started, id)
end
if (rec.queue or '') ~= '' then redis.call('ZADD', k('queue', rec.queue, 'recs'), started, id) end
local ckey = k('call', rec.call_id)
if redis.call('EXISTS', ckey) == 1 then
  redis.call('HSET', ckey, 'recording_id', id, 'recording_ms', tonumber(rec.duration_ms) or 0,
             'recording_sha256', rec.sha256 or '')
end
if transcribe then redis.call('LPUSH', k('transcribe', 'jobs'), id) end
emit('recording.saved', {recording_id = id, call_id = rec.call_id, agent_id = rec.agent_id or '',
                         queue = rec.queue or '', duration_ms = tonumber(rec.duration_ms) or 0})
return 1
