-- Transcripts and quality checks of recordings (ivr/queues/quality.py; docs/quality.md). The last
-- library. A transcript is k('transcript', id) (id: the recording's), indexed by the recording's
-- start in k('transcripts'), k('agent', a, 'transcripts'), k('queue', q, 'transcripts') and, for
-- search, per word in k('tx', 'term', word). Its quality is k('quality', id) (score, flags, checks,
-- reviews) with the manual reviews in k('quality', id, 'reviews').
local QL = {}
QL.REVIEWS_KEEP = 200

-- Take a recording's transcript, quality and reviews out of every index (re-transcription, deletion).
function QL.forget(id, keep_quality)
  local tkey = k('transcript', id)
  local t = redis.call('HMGET', tkey, 'agent_id', 'queue', 'terms')
  if t[1] and t[1] ~= '' then redis.call('ZREM', k('agent', t[1], 'transcripts'), id) end
  if t[2] and t[2] ~= '' then redis.call('ZREM', k('queue', t[2], 'transcripts'), id) end
  for _, term in ipairs(cjson.decode(t[3] or '[]')) do redis.call('ZREM', k('tx', 'term', term), id) end
  redis.call('ZREM', k('transcripts'), id)
  redis.call('DEL', tkey)
  if not keep_quality then
    redis.call('DEL', k('quality', id), k('quality', id, 'reviews'))
  end
end

-- The end of a job: off the consumer's working list, its attempts forgotten, the counters.
function QL.job_done(id, consumer, counter)
  redis.call('LREM', k('transcribe', 'working', consumer), 0, id)
  redis.call('HDEL', k('transcribe', 'attempts'), id)
  redis.call('HINCRBY', k('transcribe', 'stats'), counter, 1)
  redis.call('HSET', k('transcribe', 'stats'), 'at', NOW)
end

-- A transcript that could not be made: its status and why (no words, no index entries).
function QL.mark(id, status, err)
  local r = hgetall(k('rec', id))
  if not r.id then return 0 end
  QL.forget(id, true)
  redis.call('HSET', k('transcript', id), 'status', status, 'error', err, 'call_id', r.call_id or '',
             'agent_id', r.agent_id or '', 'queue', r.queue or '', 'started_at', r.started_at or '0',
             'duration_ms', r.duration_ms or '0', 'decoded_at', NOW)
  redis.call('HINCRBY', k('transcript', id), 'version', 1)
  return 1
end
