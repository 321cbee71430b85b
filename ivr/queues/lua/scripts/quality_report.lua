-- Per-agent quality figures over one slice of the recordings that started in [since, until)
-- (ivr/queues/quality.py report: it adds the slices up, so no call of this script runs long).
-- A = since (ms), until (ms, excluded), offset, count (recordings of this slice), agent ('' = every
-- agent). Returns JSON {agents: {id: {calls, talk_ms, scored, score_sum, score_min, flags: {name: n},
-- reviews, review_sum}}, looked}.
local since, before, offset, count, only = tonumber(A[1]), tonumber(A[2]) - 1, tonumber(A[3]), tonumber(A[4]), A[5]
local index = only ~= '' and k('agent', only, 'recs') or k('recs')
local ids = redis.call('ZRANGEBYSCORE', index, since, before, 'LIMIT', offset, count)
local agents, looked = {}, 0
for i = 1, #ids do
  local id = ids[i]
  looked = looked + 1
  local r = redis.call('HMGET', k('rec', id), 'agent_id', 'duration_ms')
  local aid = r[1]
  if only ~= '' then aid = only end
  if aid and aid ~= '' then
    local a = agents[aid]
    if not a then
      a = {calls = 0, talk_ms = 0, scored = 0, score_sum = 0, score_min = false, flags = {}, reviews = 0,
           review_sum = 0}
      agents[aid] = a
    end
    a.calls = a.calls + 1
    a.talk_ms = a.talk_ms + (tonumber(r[2]) or 0)
    local q = redis.call('HMGET', k('quality', id), 'score', 'flags', 'reviews', 'review_sum')
    local score = tonumber(q[1])
    if score then
      a.scored = a.scored + 1
      a.score_sum = a.score_sum + score
      if not a.score_min or score < a.score_min then a.score_min = score end
      for _, f in ipairs(cjson.decode(q[2] or '[]')) do a.flags[f] = (a.flags[f] or 0) + 1 end
    end
    a.reviews = a.reviews + (tonumber(q[3]) or 0)
    a.review_sum = a.review_sum + (tonumber(q[4]) or 0)
  end
end
return cjson.encode({agents = agents, looked = looked})
