-- One page of the call list (GET /api/v1/calls; ivr/queues/store.py list_calls), read-only.
-- A = index ('all' | 'agent' | 'queue'), its agent id or queue, from_ms, top_ms (the newest start
--     to list, inclusive), cursor start ms ('' = none), cursor call id, limit, budget,
--     filters JSON {queue, outcome, direction, number, prefix} ('' = any).
-- Walks the index newest first by rank (ties of one millisecond by id, descending), from just after
-- the cursor's call (or the newest start <= top_ms), looking at `budget` entries at most, and checks
-- the filters on a few fields of each record. Returns {more (0/1), start ms and id of the last entry
-- looked at, the ids of the calls that pass...}; expired records (the index outlives them) are skipped.
local key
if A[1] == 'agent' then key = k('agent', A[2], 'calls')
elseif A[1] == 'queue' then key = k('queue', A[2], 'calls')
else key = k('calls', 'started') end
local from, top = tonumber(A[3]), tonumber(A[4])
local cur_s, cur_id = tonumber(A[5] or ''), A[6]
local limit, budget = tonumber(A[7]), tonumber(A[8])
local f = cjson.decode(A[9])

-- a > b comparing bytes, as a sorted set orders the members of one score (Lua's < on strings
-- follows the server's locale)
local function bytes_after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local rank
if cur_s then
  local at = redis.call('ZSCORE', key, cur_id)
  if at and tonumber(at) == cur_s then
    rank = redis.call('ZREVRANK', key, cur_id) + 1
  else  -- the cursor's call left the index (trimmed): go on just below where it was
    local s = string.format('%d', cur_s)
    rank = redis.call('ZCOUNT', key, '(' .. s, '+inf')
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, s, s, 'LIMIT', 0, 10000)) do
      if bytes_after(m, cur_id) then rank = rank + 1 end
    end
  end
else
  rank = redis.call('ZCOUNT', key, '(' .. string.format('%d', top), '+inf')
end

local function passes(cid)
  local v = redis.call('HMGET', k('call', cid), 'state', 'queue', 'outcome', 'direction', 'ani', 'dnis', 'number')
  if not v[1] then return false end  -- expired
  if f.queue ~= '' and v[2] ~= f.queue then return false end
  if f.outcome ~= '' and v[3] ~= f.outcome then return false end
  if f.direction ~= '' then
    local d = v[4]
    if not d or d == '' then d = 'inbound' end
    if d ~= f.direction then return false end
  end
  if f.number ~= '' then
    local n = #f.number
    for i = 5, 7 do
      local x = v[i]
      if x and (x == f.number or (f.prefix and string.sub(x, 1, n) == f.number)) then return true end
    end
    return false
  end
  return true
end

local out, looked, last_s, last_id, last_rank, done = {}, 0, '', '', nil, false
while not done and looked < budget and #out < limit do
  local n = math.min(100, budget - looked)
  local batch = redis.call('ZREVRANGE', key, rank, rank + n - 1, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local cid, sc = batch[i], tonumber(batch[i + 1])
    if sc < from then
      done = true
      break
    end
    looked = looked + 1
    last_s, last_id, last_rank = string.format('%d', sc), cid, rank + (i - 1) / 2
    if passes(cid) then
      out[#out + 1] = cid
      if #out >= limit then break end
    end
    if looked >= budget then break end
  end
  rank = rank + #batch / 2
end

local more = 0
if last_rank and not done then
  local nxt = redis.call('ZREVRANGE', key, last_rank + 1, last_rank + 1, 'WITHSCORES')
  if #nxt > 0 and tonumber(nxt[2]) >= from then more = 1 end
end
local res = {more, last_s, last_id}
for _, cid in ipairs(out) do res[#res + 1] = cid end
return res
