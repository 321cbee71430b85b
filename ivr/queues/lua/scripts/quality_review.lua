-- A supervisor's or admin's manual review of a recording (ivr/queues/quality.py add_review).
-- A = id, by, role, score (0-100), comment, now (ms, '' = the server's). The latest 200 are kept;
-- the recording's quality keeps their count and sum. Returns the review (JSON).
local id, by, role, score, comment = A[1], A[2], A[3], tonumber(A[4]), A[5]
local now = tonumber(A[6]) or NOW
local r = hgetall(k('rec', id))
if not r.id then return redis.error_reply('recording.not_found ' .. id) end
if not score or score < 0 or score > 100 or score ~= math.floor(score) then
  return redis.error_reply('request.invalid score must be 0-100')
end
local review = cjson.encode({at = now, by = by, role = role, score = score, comment = comment})
local rkey = k('quality', id, 'reviews')
redis.call('LPUSH', rkey, review)
redis.call('LTRIM', rkey, 0, QL.REVIEWS_KEEP - 1)
local qkey = k('quality', id)
redis.call('HINCRBY', qkey, 'reviews', 1)
redis.call('HINCRBY', qkey, 'review_sum', score)
redis.call('HSET', qkey, 'review_last', score, 'reviewed_at', now, 'agent_id', r.agent_id or '',
           'queue', r.queue or '', 'call_id', r.call_id or '', 'started_at', r.started_at or '0')
emit('quality.reviewed', {recording_id = id, call_id = r.call_id or '', agent_id = r.agent_id or '', by = by,
                          score = score})
return review
