-- One page of the case list (ivr/queues/store.py list_cases), read-only, newest first by opened_at
-- (ties of one ms by id, descending). A = status, owner, tier ('' = any), due ('' | 'soon' | 'overdue'),
-- soon (ms), limit (1-200), cursor opened_at ('' = from the newest), cursor id, now (ms, '' = the
-- server's), budget (entries looked at, at most).
-- due 'soon': pending cases due in [now, now + soon]; 'overdue': pending cases due before now.
-- With a due filter whose range of the due index holds at most `budget` cases, those are read and
-- sorted (an exact page); otherwise the index of every case (or the owner's) is walked from the
-- cursor, `budget` entries at most, so a page with a rare filter may come back short with a cursor
-- to go on from. Returns {more (0/1), cursor opened_at, cursor id, case JSON...}.
local status, owner, tier, due = A[1], CS.check_name('owner', A[2], 64), A[3], A[4]
local soon = CS.ms('soon', A[5])
local limit, budget = tonumber(A[6]), tonumber(A[10])
if not limit or limit < 1 or limit > 200 then CS.fail('invalid', 'limit must be 1-200') end
if not budget or budget < 1 or budget > 5000 then CS.fail('invalid', 'budget must be 1-5000') end
local cur_s, cur_id = tonumber(A[7] or ''), A[8]
local now = CS.clock(A[9])
local lo, hi
if due == 'soon' then
  lo, hi = string.format('%d', now), string.format('%d', now + soon)
elseif due == 'overdue' then
  lo, hi = '-inf', '(' .. string.format('%d', now)
elseif due ~= '' then
  CS.fail('invalid', 'due must be soon or overdue')
end

local function passes(c)
  if not c.status then return false end
  if status ~= '' and c.status ~= status then return false end
  if owner ~= '' and c.owner ~= owner then return false end
  if tier ~= '' and c.tier ~= tier then return false end
  if due ~= '' then
    if not CASE_PENDING[c.status] then return false end
    local d = tonumber(c.due_at) or 0
    if due == 'soon' and (d < now or d > now + soon) then return false end
    if due == 'overdue' and d >= now then return false end
  end
  return true
end

local function page(rows, more, last_s, last_id)
  local res = {more, last_s, last_id}
  for _, c in ipairs(rows) do res[#res + 1] = cjson.encode(c) end
  return res
end

if due ~= '' and redis.call('ZCOUNT', k('cases', 'due'), lo, hi) <= budget then
  local found = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('cases', 'due'), lo, hi, 'LIMIT', 0, budget)) do
    local c = hgetall(k('case', id))
    local s = tonumber(c.opened_at or '')
    if s and passes(c) and (not cur_s or CS.after(s, id, cur_s, cur_id)) then
      found[#found + 1] = {s = s, id = id, c = c}
    end
  end
  table.sort(found, function(x, y) return CS.after(y.s, y.id, x.s, x.id) end)
  local rows = {}
  for i = 1, math.min(limit, #found) do rows[i] = found[i].c end
  if #found <= limit then return page(rows, 0, '', '') end
  return page(rows, 1, string.format('%d', found[limit].s), found[limit].id)
end

local key = owner ~= '' and k('agent', owner, 'cases') or k('cases', 'index')
local rank = 0
if cur_s then
  local at = redis.call('ZSCORE', key, cur_id)
  if at and tonumber(at) == cur_s then
    rank = redis.call('ZREVRANK', key, cur_id) + 1
  else  -- the cursor's case left this index (another owner now): go on just below where it was
    local s = string.format('%d', cur_s)
    rank = redis.call('ZCOUNT', key, '(' .. s, '+inf')
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, s, s, 'LIMIT', 0, 1000)) do
      if not CS.after(cur_s, m, cur_s, cur_id) then rank = rank + 1 end
    end
  end
end

local rows, looked, last_s, last_id, last_rank = {}, 0, '', '', nil
while looked < budget and #rows < limit do
  local batch = redis.call('ZREVRANGE', key, rank, rank + math.min(100, budget - looked) - 1, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    looked = looked + 1
    last_s, last_id, last_rank = string.format('%d', tonumber(batch[i + 1])), batch[i], rank + (i - 1) / 2
    local c = hgetall(k('case', batch[i]))
    if passes(c) then rows[#rows + 1] = c end
    if #rows >= limit or looked >= budget then break end
  end
  rank = rank + #batch / 2
end
local more = 0
if last_rank and redis.call('ZCARD', key) > last_rank + 1 then more = 1 end
return page(rows, more, last_s, last_id)
