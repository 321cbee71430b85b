-- Add a note to a case (ivr/queues/store.py add_case_note): newest first, the latest 200 kept;
-- case.note tells its length, not its text. A = case id, by, text, now (ms, '' = the server's).
-- Returns the note (JSON {at, by, text}).
local id = CS.check_id(A[1])
local now = CS.clock(A[4])
local by = CS.check_len('by', A[2], 100, 100)
local text = CS.check_len('text', A[3], 2000)
if text == '' then CS.fail('invalid', 'a note needs a text') end
local key = k('case', id)
local c = CS.load(id)
local note = cjson.encode({at = now, by = by, text = text})
redis.call('LPUSH', k('case', id, 'notes'), note)
redis.call('LTRIM', k('case', id, 'notes'), 0, 199)
redis.call('HSET', key, 'updated_at', now)
redis.call('HINCRBY', key, 'version', 1)
emit('case.note', {case_id = id, agent_id = c.owner or '', by = by, length = CS.chars(text)})
return note
