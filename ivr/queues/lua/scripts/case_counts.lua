-- The case counters (ivr/queues/store.py case_counts), read-only: the counters hash, and from the due
-- index the pending cases due in [now, now + soon] and those past due (before now; the scan may not
-- have marked them yet). A = now (ms, '' = the server's), soon (ms). Returns JSON
-- {counts = {field = n}, due_soon = n, past_due = n}.
local now = CS.clock(A[1])
local soon = CS.ms('soon', A[2])
local flat = redis.call('HGETALL', k('cases', 'counts'))
local counts = {}
for i = 1, #flat, 2 do counts[flat[i]] = tonumber(flat[i + 1]) end
local n = string.format('%d', now)
return cjson.encode({counts = counts,
                     due_soon = redis.call('ZCOUNT', k('cases', 'due'), n, string.format('%d', now + soon)),
                     past_due = redis.call('ZCOUNT', k('cases', 'due'), '-inf', '(' .. n)})
