-- A consumer starts: what it had taken and not finished (it stopped or crashed) goes back to the
-- taking (right) end of the jobs list, the oldest taken rightmost. A = consumer. Returns how many.
local working, jobs = k('transcribe', 'working', A[1]), k('transcribe', 'jobs')
local n = 0
while n < 100000 and redis.call('LMOVE', working, jobs, 'LEFT', 'RIGHT') do n = n + 1 end
return n
