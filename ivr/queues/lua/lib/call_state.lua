-- The call state machine: the single place a call record's `state` is written (mirrored in
-- ivr/core/call_states.py; a unit test checks the tables agree). Appended after prelude.lua.
-- A move not in CALL_TRANSITIONS raises `call.bad_transition`: the script stops there (Redis keeps
-- what it wrote before, so scripts check their preconditions first) and the caller gets the error,
-- so a record never holds a state the machine does not allow, and every test sees a bad move.

local CALL_INITIAL = {ivr = true, booked = true, dialing = true}

local CALL_TRANSITIONS = {
  ivr = {'ivr', 'queued', 'ended'},
  queued = {'queued', 'ivr', 'offered', 'scheduled', 'ended'},
  offered = {'connected', 'queued', 'scheduled', 'ended'},
  connected = {'ivr', 'held', 'consulting', 'transferring', 'conferenced', 'queued', 'ended'},
  held = {'ivr', 'connected', 'consulting', 'transferring', 'queued', 'ended'},
  consulting = {'connected', 'held', 'conferenced', 'transferring', 'ended'},
  transferring = {'connected', 'queued', 'offered', 'ended'},
  conferenced = {'connected', 'held', 'ended'},
  booked = {'queued', 'ended'},
  scheduled = {'queued', 'ended'},
  dialing = {'connected', 'ivr', 'ended'},
  ended = {},
}

local CALL_ALLOWED = {}
for from, tos in pairs(CALL_TRANSITIONS) do
  CALL_ALLOWED[from] = {}
  for _, to in ipairs(tos) do CALL_ALLOWED[from][to] = true end
end

-- Move call record `ckey` to `state` and write the other `fields` (name, value, ...) with it.
-- `create` starts a new record (a call entering a worker, a booked callback, a click-to-dial call): it may hold only an
-- initial state, and replaces whatever an earlier record of the same id left (an ended record).
local function write_call_state(ckey, state, create, fields)
  local cur = redis.call('HGET', ckey, 'state')
  local ok
  if create then
    ok = CALL_INITIAL[state] and (not cur or cur == 'ended' or cur == state)
  else
    ok = cur and CALL_ALLOWED[cur] and CALL_ALLOWED[cur][state]
  end
  if not ok then
    error({err = 'call.bad_transition ' .. ckey .. ' ' .. tostring(cur or 'none') .. ' -> ' .. tostring(state)})
  end
  local args = {'HSET', ckey, 'state', state}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  redis.call(unpack(args))
  return cur
end

local function set_call_state(ckey, state, ...)
  return write_call_state(ckey, state, false, {...})
end

local function create_call(ckey, state, ...)
  return write_call_state(ckey, state, true, {...})
end
