-- One page of the cases opened in [since, until) (ivr/queues/store.py iter_case_report, for
-- `ivr report cases`), read-only, oldest first by opened_at (ties of one ms by id, as the sorted set
-- orders them). A = since (ms), until (ms), cursor opened_at ('' = from since), cursor id, page size
-- (1-1000). Each case is its hash plus `first_contact`: its class in the time to first contact
-- (CS.first_contact_class; '' = not judged), so the rows and case_first_contact count alike.
-- Returns JSON {cases = [case...], more = 0/1, last_s = the cursor's opened_at, last_id}.
local since, till = CS.ms('since', A[1]), CS.ms('until', A[2])
local size = tonumber(A[5])
if not size or size < 1 or size > 1000 then CS.fail('invalid', 'page size must be 1-1000') end
local key = k('cases', 'index')
local cur_s, cur_id = tonumber(A[3] or ''), A[4] or ''
local rank
if not cur_s then
  rank = redis.call('ZCOUNT', key, '-inf', '(' .. string.format('%d', since))
else
  CS.check_id(cur_id)
  local at = redis.call('ZSCORE', key, cur_id)
  if at and tonumber(at) == cur_s then
    rank = redis.call('ZRANK', key, cur_id) + 1
  else  -- not where the cursor says (a case never leaves the index; a forged cursor): just after it
    local s = string.format('%d', cur_s)
    rank = redis.call('ZCOUNT', key, '-inf', '(' .. s)
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, s, s, 'LIMIT', 0, 1000)) do
      if not CS.after(cur_s, cur_id, cur_s, m) then rank = rank + 1 end
    end
  end
end
local rows = redis.call('ZRANGE', key, rank, rank + size - 1, 'WITHSCORES')
local cases, more, last_s, last_id = {}, 1, '', ''
for i = 1, #rows, 2 do
  local s = tonumber(rows[i + 1])
  if s >= till then
    more = 0
    break
  end
  local c = hgetall(k('case', rows[i]))
  if c.status then
    c.first_contact = CS.first_contact_class(c.status, c.contacted_at, c.first_contact_met, c.overdue) or ''
    cases[#cases + 1] = cjson.encode(c)
  end
  last_s, last_id = string.format('%d', s), rows[i]
end
if #rows < 2 * size or last_id == '' then more = 0 end
return {more, last_s, last_id, unpack(cases)}
