-- Read only: a slice of a queue's interval counters for the forecast (ivr/planning/service.py).
-- A = queue, from (epoch s, inclusive), to (excluded), at most how many intervals.
-- Returns {intervals read, the last start read or '', "start,offered,handled,handle_ms,abandoned,
-- answer_wait_ms,abandon_wait_ms,start,..."}: one string, not a reply of 7 values per interval (parsing
-- those in Python is what made a year of history take 10 s); an expired interval is left out.
local queue, lo, hi, n = A[1], A[2], A[3], tonumber(A[4])
local starts = redis.call('ZRANGEBYSCORE', k('queue', queue, 'intervals'), lo, '(' .. hi, 'LIMIT', 0, n)
local out = {}
for _, s in ipairs(starts) do
  local v = redis.call('HMGET', k('queue', queue, 'interval', s), 'offered', 'handled', 'handle_ms', 'abandoned',
                       'answer_wait_ms', 'abandon_wait_ms')
  local any = false
  for j = 1, 6 do if v[j] then any = true end end
  if any then
    out[#out + 1] = s
    for j = 1, 6 do out[#out + 1] = string.format('%d', math.floor(tonumber(v[j]) or 0)) end
  end
end
return {#starts, starts[#starts] or '', table.concat(out, ',')}
