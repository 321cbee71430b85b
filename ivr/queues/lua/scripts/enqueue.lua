-- Put a call in a queue and try to match it at once (see ivr/queues/routing.py).
-- A = call_id, queue, skill, priority (0..9, higher first), journey JSON,
--     route JSON {lang, strategy, no_agents, alts: [{skills, m}]} ('' = agents with `skill`),
--     stages JSON [{after_s, alts, queue?, strategy?}] ('' = none).
-- A caller (by ANI) who hung up while waiting in this queue within the resume window, or who has an
-- open callback here, gets that place back when it is better (callbacks.lua: call.place_restored).
-- Returns the offer (JSON) or false (also when the call is already offered or connected: unchanged); error queue.no_agents when the route says `fallback` and no agent
-- able to take the caller is logged in (the call stays in the IVR).
local cid, queue, skill, prio = A[1], A[2], A[3], tonumber(A[4])
local ckey = k('call', cid)
if redis.call('SISMEMBER', k('calls', 'active'), cid) == 0 then
  return redis.error_reply('call.not_found ' .. cid)
end
local state = redis.call('HGET', ckey, 'state')
-- An offer is in flight or the agent talks to the caller (e.g. a retry whose first reply was lost,
-- when the first run matched the caller at once): nothing changes; the offer is in the worker inbox.
if state == 'offered' or state == 'connected' then return false end
local route_json = A[6]
if not route_json or route_json == '' then
  route_json = cjson.encode({lang = '', strategy = 'longest_idle', no_agents = 'queue',
                             alts = {{skills = {skill}, m = 1}}})
end
local route = cjson.decode(route_json)
if state == 'queued' then R.unqueue(cid) end  -- queued again: move
if route.no_agents == 'fallback' and not R.staffed(route) then
  set_call_state(ckey, 'ivr', 'left_queue_at', NOW, 'left_reason', 'no_agents')
  emit('call.left_queue', {call_id = cid, queue = queue, reason = 'no_agents', waited_s = 0})
  return redis.error_reply('queue.no_agents no agent for queue ' .. queue .. ' is logged in')
end
local stages = A[7]
if not stages or stages == '' then stages = '[]' end
local queued_at, resumed = NOW, nil
local rprio, rat, rinfo = CB.resume(cid, queue, prio, redis.call('HGET', ckey, 'ani'))
if rprio then prio, queued_at, resumed = rprio, rat, rinfo end
set_call_state(ckey, 'queued', 'queue', queue, 'skill', skill, 'priority', prio,
           'queued_at', queued_at, 'journey', A[5], 'route', route_json, 'stages', stages, 'stage', 0)
redis.call('HDEL', ckey, 'escalate_at')
local first = cjson.decode(stages)[1]
if first then redis.call('HSET', ckey, 'escalate_at', queued_at + math.floor(first.after_s * 1000)) end
redis.call('HSET', k('queues'), queue, table.concat(route.alts[1].skills, '+'))
R.queue_call(cid)
stats_offered(queue)
emit('call.queued', {call_id = cid, queue = queue, skill = skill, priority = prio,
                     skills = route.alts[1].skills, min_proficiency = route.alts[1].m,
                     language = route.lang, strategy = route.strategy})
if resumed then
  redis.call('HSET', ckey, 'resumed_from', resumed.from, 'resumed_previous', resumed.previous)
  emit('call.place_restored', {call_id = cid, queue = queue, from = resumed.from, previous = resumed.previous,
                        priority = prio, place = wait_score(prio, queued_at),
                        waited_before_s = (NOW - queued_at) / 1000.0})
end
return match_call(cid)
