-- One page of the transcript search (ivr/queues/quality.py search_transcripts), newest first.
-- A = terms (JSON list of normalised words, all required), phrase (the words in a row on one
-- channel; '' for none), agent, queue, since (ms), until (ms, excluded), after score ('' none),
-- after id, limit, budget (candidates looked at, at most). The smallest of the indexes that apply
-- (each term's, the agent's, the queue's; else every transcript) is walked and the others are
-- checked by ZSCORE. Returns JSON {hits: [[id, started]...], next: [started, id] | false}: next is
-- where to go on (also when the budget ran out before the page was full).
local terms, phrase, agent, queue = cjson.decode(A[1]), A[2], A[3], A[4]
local since, before = tonumber(A[5]), tonumber(A[6]) - 1
local after_s, after_id = tonumber(A[7]), A[8]
local limit, budget = tonumber(A[9]), tonumber(A[10])
local sets = {}
for _, t in ipairs(terms) do sets[#sets + 1] = k('tx', 'term', t) end
if agent ~= '' then sets[#sets + 1] = k('agent', agent, 'transcripts') end
if queue ~= '' then sets[#sets + 1] = k('queue', queue, 'transcripts') end
if #sets == 0 then sets[1] = k('transcripts') end
local drive, best = 1, nil
for i, s in ipairs(sets) do
  local n = redis.call('ZCARD', s)
  if best == nil or n < best then drive, best = i, n end
end
local top = before
if after_s and after_s < top then top = after_s end
local hits, looked, offset, last = {}, 0, 0, nil
local needle = ' ' .. phrase .. ' '
while looked < budget and #hits < limit do
  local rows = redis.call('ZREVRANGEBYSCORE', sets[drive], top, since, 'WITHSCORES', 'LIMIT', offset, 200)
  if #rows == 0 then return cjson.encode({hits = hits, next = false}) end
  offset = offset + #rows / 2
  for i = 1, #rows, 2 do
    local id, score = rows[i], tonumber(rows[i + 1])
    if not after_s or score < after_s or (score == after_s and id < after_id) then
      looked = looked + 1
      last = {score, id}
      local ok = true
      for j, s in ipairs(sets) do
        if ok and j ~= drive and not redis.call('ZSCORE', s, id) then ok = false end
      end
      if ok and phrase ~= '' then
        local t = redis.call('HMGET', k('transcript', id), 'text_caller', 'text_agent')
        ok = string.find(' ' .. (t[1] or '') .. ' ', needle, 1, true) ~= nil
             or string.find(' ' .. (t[2] or '') .. ' ', needle, 1, true) ~= nil
      end
      if ok then hits[#hits + 1] = {id, score} end
      if #hits >= limit or looked >= budget then return cjson.encode({hits = hits, next = last}) end
    end
  end
  if #rows < 400 then return cjson.encode({hits = hits, next = false}) end
end
return cjson.encode({hits = hits, next = last or false})
