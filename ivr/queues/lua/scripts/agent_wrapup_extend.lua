-- The agent asks for more wrap-up time. A = agent_id, extend seconds, max seconds (the longest a
-- wrap-up may last from its start), by (user id). Returns the new deadline (epoch ms).
-- agent.not_in_wrapup when the agent is not in wrap-up (it ended meanwhile, or never began);
-- agent.wrapup_max when the deadline is already as late as it may be. The time added counts in the
-- handle time of the wrapped-up call's queue.
local aid, extend, max_s, by = A[1], tonumber(A[2]), tonumber(A[3]), A[4]
local key = k('agent', aid)
local a = redis.call('HMGET', key, 'state', 'state_since')
if not a[1] then return redis.error_reply('agent.not_found ' .. aid) end
if a[1] ~= 'wrapup' then return redis.error_reply('agent.not_in_wrapup agent is ' .. a[1]) end
local cur = tonumber(redis.call('ZSCORE', k('wrapup'), aid) or NOW)
local limit = tonumber(a[2] or NOW) + math.floor(max_s * 1000)
local deadline = math.min(math.max(cur, NOW) + math.floor(extend * 1000), limit)
if deadline <= cur then
  return redis.error_reply(string.format('agent.wrapup_max wrap-up lasts %d s at most: take a break instead', max_s))
end
redis.call('ZADD', k('wrapup'), 'XX', deadline, aid)
-- the extension is handle time of the call it wraps up (its queue's figures counted the planned
-- wrap-up when the agent was released)
local cid = redis.call('HGET', key, 'call_id')
local queue = cid and redis.call('HGET', k('call', cid), 'queue')
if queue and queue ~= '' then redis.call('HINCRBY', stats_key(queue), 'handle_ms', deadline - cur) end
emit('agent.wrapup_extended', {agent_id = aid, wrapup_until = deadline, extended_s = (deadline - cur) / 1000.0,
                               by = by})
return deadline
