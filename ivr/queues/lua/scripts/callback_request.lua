-- Book a callback that keeps the caller's place in `queue`.
-- A = call_id, callback id, queue, number, journey JSON, priority ('' = the call's, else 0),
--     route JSON of `queue` ('' = agents with the skill named like it; the call's own route when it
--     was queued there), seconds its records are kept once over ('' = 7 days).
-- The place is the waiting score the caller has in the queue (it leaves the queue: it waits no more),
-- or had when it was last queued there, or would have now: (9 - priority) * 1e13 + ms.
-- A call has at most one pending callback: booking again returns it. Returns {id, place, created (0/1)}.
-- The callback gets its own call record (callbacks.lua), booked until this call ends: then it
-- competes for agents at `place` like a waiting caller.
local cid, id, queue, number = A[1], A[2], A[3], A[4]
local ckey = k('call', cid)
if redis.call('EXISTS', ckey) == 0 then return redis.error_reply('call.not_found ' .. cid) end
local c = hgetall(ckey)
if c.callback_id then
  local prev = redis.call('HMGET', k('callback', c.callback_id), 'state', 'place')
  if prev[1] == 'pending' then return {c.callback_id, tonumber(prev[2]), 0} end
end
local prio = tonumber(A[6]) or tonumber(c.priority) or 0
local wkey = k('queue', queue, 'waiting')
local score = redis.call('ZSCORE', wkey, cid)
local place
if score then
  place = tonumber(score)
  R.unqueue(cid)
  stats_callback(queue)
  set_call_state(ckey, 'ivr')
elseif c.queue == queue and c.queued_at then
  prio = tonumber(c.priority) or prio
  place = (9 - prio) * 1e13 + tonumber(c.queued_at)
else
  place = (9 - prio) * 1e13 + NOW
end
redis.call('HSET', k('callback', id), 'id', id, 'call_id', cid, 'queue', queue, 'number', number,
           'journey', A[5], 'created_at', NOW, 'state', 'pending', 'place', place, 'priority', prio,
           'hotline', c.hotline or '', 'language', c.language or '', 'ani', c.ani or '', 'attempts', 0)
local route = (c.queue == queue and c.route) or A[7]
if not route or route == '' then
  route = cjson.encode({lang = '', strategy = 'longest_idle', no_agents = 'queue', alts = {{skills = {queue}, m = 1}}})
end
local band = math.floor(place / 1e13)
create_call(k('call', id), 'booked', 'call_id', id, 'kind', 'callback', 'callback_id', id, 'origin_call_id', cid,
           'queue', queue, 'skill', cjson.decode(route).alts[1].skills[1],
           'priority', 9 - band, 'queued_at', place - band * 1e13, 'route', route, 'stages', '[]', 'stage', 0,
           'ani', c.ani or '', 'dnis', c.dnis or '', 'hotline', c.hotline or '', 'language', c.language or '',
           'number', number, 'journey', A[5], 'started_at', NOW, 'attempts', 0,
           'ttl', tonumber(A[8] or '') or 604800)
if CB.ani_ok(c.ani) then redis.call('SET', k('queue', queue, 'callback_ani', c.ani), id) end
redis.call('ZADD', k('queue', queue, 'callbacks'), place, id)
redis.call('HSET', ckey, 'callback_id', id)
emit('callback.requested', {callback_id = id, call_id = cid, queue = queue, place = place, priority = prio,
                            hotline = c.hotline or ''})
return {id, place, 1}
