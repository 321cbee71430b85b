-- Time to first contact per tier (ivr/queues/store.py case_first_contact), read-only, one batch of
-- the cases opened in [since, until): A = since (ms), until (ms), rank to start at ('' = the first
-- case opened at or after since), batch size (1-5000). Returns JSON {tiers = {tier = {opened,
-- contacted, within_due, first_contact_ms, overdue_waiting}}, next = the rank to go on from, or -1}.
local since, till = CS.ms('since', A[1]), CS.ms('until', A[2])
local batch = tonumber(A[4])
if not batch or batch < 1 or batch > 5000 then CS.fail('invalid', 'batch must be 1-5000') end
local key = k('cases', 'index')
local rank = tonumber(A[3] or '')
if not rank then rank = redis.call('ZCOUNT', key, '-inf', '(' .. string.format('%d', since)) end
local tiers = {}
for t, _ in pairs(CS.TIERS) do
  tiers[t] = {opened = 0, contacted = 0, within_due = 0, first_contact_ms = 0, overdue_waiting = 0}
end
local rows = redis.call('ZRANGE', key, rank, rank + batch - 1, 'WITHSCORES')
local nxt = rank + #rows / 2
for i = 1, #rows, 2 do
  if tonumber(rows[i + 1]) >= till then
    nxt = -1
    break
  end
  local v = redis.call('HMGET', k('case', rows[i]), 'tier', 'status', 'contacted_at', 'first_contact_ms',
                       'first_contact_met', 'overdue')
  local t = tiers[v[1] or '']
  if t then
    t.opened = t.opened + 1
    local class = CS.first_contact_class(v[2], v[3], v[5], v[6])
    if class == 'met' or class == 'late' then
      t.contacted = t.contacted + 1
      t.first_contact_ms = t.first_contact_ms + (tonumber(v[4]) or 0)
      if class == 'met' then t.within_due = t.within_due + 1 end
    elseif class == 'overdue' then
      t.overdue_waiting = t.overdue_waiting + 1
    end
  end
end
if #rows < 2 * batch then nxt = -1 end
return cjson.encode({tiers = tiers, next = nxt})
