-- One round trip of housekeeping, done by whichever process holds the lease.
-- A = owner, lease ms, wrapup seconds, ttl seconds.
-- Returns {leader (0/1), reaped workers as "name=count"...}; wrap-ups that ended are released and
-- waiting callers' due escalation steps applied, callbacks whose retry is due put back at their place
-- (offers go to the workers' inboxes as usual).
local owner, lease_ms, wrapup, ttl = A[1], tonumber(A[2]), tonumber(A[3]), tonumber(A[4])
local lkey = k('lease', 'housekeeper')
local cur = redis.call('GET', lkey)
if cur ~= false and cur ~= owner then return {0} end
redis.call('SET', lkey, owner, 'PX', lease_ms)
local out = {1}
for _, aid in ipairs(redis.call('ZRANGEBYSCORE', k('wrapup'), '-inf', NOW)) do
  set_agent_state(aid, 'available', 'wrapup_done')
  match_agent(aid)
end
R.escalate_due(ESCALATE_BATCH)
CB.release_due(CB_DUE_BATCH)
-- phones whose every poller stopped (edge.registrar.stale_after_s): unroutable already (R.phone_ready);
-- the desktops and the floor learn it here, and the next poll that finds them emits 'registered'
for _, aid in ipairs(redis.call('SMEMBERS', k('phones', 'registered'))) do
  local until_ms = tonumber(redis.call('HGET', k('agent', aid), 'phone_until')) or 0
  if until_ms <= NOW then
    redis.call('SREM', k('phones', 'registered'), aid)
    if redis.call('EXISTS', k('agent', aid)) == 1 then
      redis.call('HSET', k('agent', aid), 'phone_contacts', 0)
      emit('agent.phone', {agent_id = aid, registered = false, contacts = 0, reason = 'stale'})
    end
  end
end
for _, w in ipairs(redis.call('SMEMBERS', k('workers'))) do
  if redis.call('EXISTS', k('worker', w, 'alive')) == 0 and redis.call('SCARD', k('worker', w, 'calls')) > 0 then
    out[#out + 1] = w .. '=' .. reap(w, wrapup, ttl)
  end
end
return out
