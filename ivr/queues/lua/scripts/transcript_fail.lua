-- A recording the transcriber could not transcribe (ivr/queues/quality.py fail_transcript).
-- A = id, consumer, status (failed | skipped), error (a short reason, never a path or audio).
local id, consumer, status, err = A[1], A[2], A[3], A[4]
if status ~= 'failed' and status ~= 'skipped' then return redis.error_reply('request.invalid status') end
local marked = QL.mark(id, status, err)
QL.job_done(id, consumer, status)
return marked
