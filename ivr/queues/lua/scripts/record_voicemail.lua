-- A voicemail was recorded for the call: kept on the call record and at the head of its mailbox's list.
-- A = call_id, metadata JSON {mailbox, path, seconds, ended_by} (checked by the caller), how many a
-- mailbox keeps. A second voicemail of the same call replaces the first. Returns the entry (JSON).
local cid, keep = A[1], tonumber(A[3])
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
local vm = cjson.decode(A[2])
vm.call_id = cid
vm.at = NOW
local entry = cjson.encode(vm)
local old = redis.call('HGET', ckey, 'voicemail')
if old then
  redis.call('LREM', k('mailbox', cjson.decode(old).mailbox, 'voicemail'), 0, old)
end
redis.call('HSET', ckey, 'voicemail', entry)
local mkey = k('mailbox', vm.mailbox, 'voicemail')
redis.call('LPUSH', mkey, entry)
redis.call('LTRIM', mkey, 0, keep - 1)
local c = redis.call('HMGET', ckey, 'queue', 'agent_id', 'hotline')
emit('voicemail.new', {call_id = cid, mailbox = vm.mailbox, seconds = vm.seconds, ended_by = vm.ended_by,
                       queue = c[1] or '', agent_id = c[2] or '', hotline = c[3] or ''})
return entry
