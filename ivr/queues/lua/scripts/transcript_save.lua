-- A transcriber finished a recording (ivr/queues/quality.py save_transcript). A = id, consumer,
-- transcript (JSON object of strings: language, model, text_caller, text_agent, words_caller,
-- words_agent, terms, decode_ms, audio_ms), quality (JSON: score, flags and checks as JSON text,
-- rules), lag_ms.
-- The recording's own record gives call, agent, queue and start. Returns 0 when the recording is
-- gone (deleted while it was decoded): nothing is written.
local id, consumer = A[1], A[2]
local tx, q, lag = cjson.decode(A[3]), cjson.decode(A[4]), tonumber(A[5]) or 0
local r = hgetall(k('rec', id))
if not r.id then
  QL.job_done(id, consumer, 'gone')
  return 0
end
QL.forget(id, true)
local started = tonumber(r.started_at) or 0
local agent, queue = r.agent_id or '', r.queue or ''
local tkey = k('transcript', id)
local flat = {'status', 'done', 'call_id', r.call_id or '', 'agent_id', agent, 'queue', queue,
              'started_at', started, 'duration_ms', r.duration_ms or '0', 'decoded_at', NOW, 'error', ''}
for f, v in pairs(tx) do flat[#flat + 1] = f; flat[#flat + 1] = tostring(v) end
redis.call('HSET', tkey, unpack(flat))
redis.call('HINCRBY', tkey, 'version', 1)
redis.call('ZADD', k('transcripts'), started, id)
if agent ~= '' then redis.call('ZADD', k('agent', agent, 'transcripts'), started, id) end
if queue ~= '' then redis.call('ZADD', k('queue', queue, 'transcripts'), started, id) end
for _, term in ipairs(cjson.decode(tx.terms or '[]')) do redis.call('ZADD', k('tx', 'term', term), started, id) end
local qkey = k('quality', id)
redis.call('HSET', qkey, 'score', q.score, 'flags', q.flags, 'checks', q.checks,
           'rules', q.rules, 'agent_id', agent, 'queue', queue, 'call_id', r.call_id or '', 'started_at', started,
           'scored_at', NOW)
local stats = k('transcribe', 'stats')
redis.call('HINCRBY', stats, 'audio_ms', tonumber(tx.audio_ms) or 0)
redis.call('HINCRBY', stats, 'decode_ms', tonumber(tx.decode_ms) or 0)
redis.call('HINCRBY', stats, 'lag_ms_sum', lag)
redis.call('HSET', stats, 'lag_ms_last', lag)
if lag > (tonumber(redis.call('HGET', stats, 'lag_ms_max')) or 0) then redis.call('HSET', stats, 'lag_ms_max', lag) end
QL.job_done(id, consumer, 'done')
local words = #cjson.decode(tx.words_caller or '[]') + #cjson.decode(tx.words_agent or '[]')
emit('transcript.ready', {recording_id = id, call_id = r.call_id or '', agent_id = agent, queue = queue,
                          words = words})
emit('quality.scored', {recording_id = id, call_id = r.call_id or '', agent_id = agent, queue = queue,
                        score = tonumber(q.score), flags = #cjson.decode(q.flags)})
return 1
