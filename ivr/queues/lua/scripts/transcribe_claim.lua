-- Bookkeeping of a job a consumer just took (BLMOVE jobs -> its working list): its attempts go up;
-- beyond A[3] (max attempts) it is marked failed and dropped. Then the backlog is shed: beyond
-- A[4] waiting jobs the oldest (right end) are marked skipped, at most 1000 per call.
-- A = id ('' when none was taken), consumer, max attempts, max backlog. Returns {attempts, shed}.
local id, consumer, max_attempts, max_backlog = A[1], A[2], tonumber(A[3]), tonumber(A[4])
local attempts = 0
if id ~= '' then
  attempts = redis.call('HINCRBY', k('transcribe', 'attempts'), id, 1)
  if attempts > max_attempts then
    QL.mark(id, 'failed', 'attempts')
    QL.job_done(id, consumer, 'failed')
  end
end
local shed, jobs = 0, k('transcribe', 'jobs')
while shed < 1000 and redis.call('LLEN', jobs) > max_backlog do
  local old = redis.call('RPOP', jobs)
  if not old then break end
  QL.mark(old, 'skipped', 'backlog')
  redis.call('HINCRBY', k('transcribe', 'stats'), 'skipped', 1)
  shed = shed + 1
end
return {attempts, shed}
