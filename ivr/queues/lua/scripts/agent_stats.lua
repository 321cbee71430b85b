-- Read only: agents' figures by interval (ivr/queues/agent_stats.py), in one consistent view.
-- A = from (epoch s), to (epoch s, exclusive), buckets (JSON list of ascending epoch-s starts, e.g. the
-- local days: each interval is summed into the last bucket starting at or before it; '' = one row per
-- interval), agent ids... (the caller sends a bounded batch).
-- Returns JSON [now ms, [[agent id, state or '', state_since or '', [{field: number...} per row]]...]]
-- (one string: far cheaper for the client to read than nested replies).
local from, to = A[1], '(' .. A[2]
local buckets = A[3] ~= '' and cjson.decode(A[3]) or nil
local function bucket_of(start)
  local lo, hi, best = 1, #buckets, buckets[1]
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if buckets[mid] <= start then best, lo = buckets[mid], mid + 1 else hi = mid - 1 end
  end
  return best
end
local out = {}
for i = 4, #A do
  local aid = A[i]
  local a = redis.call('HMGET', k('agent', aid), 'state', 'state_since')
  local rows, by_bucket = {}, {}
  for _, start in ipairs(redis.call('ZRANGEBYSCORE', k('agent', aid, 'intervals'), from, to)) do
    local h = redis.call('HGETALL', k('agent', aid, 'interval', start))
    if #h > 0 then
      local row
      if buckets then
        local b = bucket_of(tonumber(start))
        row = by_bucket[b]
        if not row then
          row = {start = b, length_s = 0}
          by_bucket[b] = row
          rows[#rows + 1] = row
        end
      else
        row = {}
        rows[#rows + 1] = row
      end
      for j = 1, #h, 2 do
        local f, v = h[j], tonumber(h[j + 1]) or 0
        if buckets and (f == 'start' or f == 'length_s') then
          if f == 'length_s' then row.length_s = row.length_s + v end
        else
          row[f] = (buckets and (row[f] or 0) or 0) + v
        end
      end
    end
  end
  out[#out + 1] = {aid, a[1] or '', a[2] or '', rows}
end
return cjson.encode({NOW, out})
