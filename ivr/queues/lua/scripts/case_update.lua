-- Change a case's tier, owner, reason or due time (ivr/queues/store.py update_case) and emit
-- case.updated with the names of the fields that changed (nothing changes, nothing is emitted).
-- A = case id, by, changes (JSON object; a field absent = unchanged). A pending case's new due time is
-- a new deadline (no longer marked overdue; the scan marks it again if it passes). An owner change
-- names both owners in `agents` (both desktops see it). Returns the case (JSON).
local id = CS.check_id(A[1])
local by = CS.check_len('by', A[2], 100, 100)
local ok, ch = pcall(cjson.decode, A[3])
if not ok or type(ch) ~= 'table' then CS.fail('invalid', 'changes must be a JSON object') end
local key = k('case', id)
local c = CS.load(id)
local pending = CASE_PENDING[c.status]
local fields, changed, agents = {'HSET', key}, {}, nil
local function set(name, value)
  fields[#fields + 1] = name
  fields[#fields + 1] = value
  changed[#changed + 1] = name
end
local tier = c.tier
if ch.tier ~= nil and ch.tier ~= c.tier then
  tier = CS.check_tier(ch.tier)
  if pending then
    redis.call('HINCRBY', k('cases', 'counts'), 'open:' .. c.tier, -1)
    redis.call('HINCRBY', k('cases', 'counts'), 'open:' .. tier, 1)
  end
  set('tier', tier)
end
local owner = c.owner or ''
if ch.owner ~= nil and ch.owner ~= owner then
  local new = CS.check_name('owner', ch.owner, 64)
  if owner ~= '' then redis.call('ZREM', k('agent', owner, 'cases'), id) end
  if new ~= '' then redis.call('ZADD', k('agent', new, 'cases'), c.opened_at, id) end
  agents = {}
  if owner ~= '' then agents[#agents + 1] = owner end
  if new ~= '' then agents[#agents + 1] = new end
  owner = new
  set('owner', new)
end
if ch.reason ~= nil and ch.reason ~= c.reason then set('reason', CS.check_len('reason', ch.reason, 200)) end
local due = tonumber(c.due_at)
if ch.due_at ~= nil and CS.ms('due_at', ch.due_at) ~= due then
  due = CS.ms('due_at', ch.due_at)
  if pending then
    CS.move_due(id, c, due)
    fields[#fields + 1] = 'overdue'
    fields[#fields + 1] = ''
  end
  set('due_at', due)
end
if #changed == 0 then return CS.view(id) end
fields[#fields + 1] = 'updated_at'
fields[#fields + 1] = NOW
redis.call(unpack(fields))
redis.call('HINCRBY', key, 'version', 1)
emit('case.updated', {case_id = id, tier = tier, agent_id = owner, by = by, changed = changed, due_at = due,
                      agents = agents})
return CS.view(id)
