-- Put stream events into the endpoints' outboxes and acknowledge them in the consumer group, in one
-- step: an event is either still pending in the group (another instance takes it over) or queued
-- for every endpoint, never half of it; queuing it twice is a no-op.
-- A = group, entries JSON [{id, type, at, body, endpoints: [name...]}]
-- Returns the number of deliveries created.
local group = A[1]
local entries = cjson.decode(A[2])
local made = 0
for _, e in ipairs(entries) do
  local ms, seq = string.match(e.id, '^(%d+)-(%d+)$')
  -- event order as a score: ms * 1000 + seq (ties beyond 999 events in one ms: by id)
  local order = string.format('%.0f', tonumber(ms) * 1000 + math.min(tonumber(seq), 999))
  for _, ep in ipairs(e.endpoints) do
    local did = ep .. '.' .. e.id
    local dkey = delivery_key(did)
    if redis.call('EXISTS', dkey) == 0 then
      redis.call('HSET', dkey, 'id', did, 'endpoint', ep, 'event_id', e.id, 'type', e.type,
                 'occurred_at', e.at, 'body', e.body, 'attempts', 0, 'state', 'pending', 'order', order,
                 'created_at', NOW)
      redis.call('ZADD', queue_key(ep), order, did)
      made = made + 1
    end
  end
  redis.call('XACK', k('events'), group, e.id)
end
return made
