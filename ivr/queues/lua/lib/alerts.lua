-- Shared helpers of the alert scripts (see ivr/queues/alerts_store.py), prepended to each.
-- ARGV[1] = key prefix, ARGV[2] = event stream max length, ARGV[3] = the event catalogue's version;
-- script arguments start at ARGV[4]. Key names mirror ivr/queues/keys.py.
local P = ARGV[1]
local MAXLEN = tonumber(ARGV[2])
local VERSION = tonumber(ARGV[3])
local A = {}
for i = 4, #ARGV do A[#A + 1] = ARGV[i] end

local function k(...) return P .. ':' .. table.concat({...}, ':') end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

-- Append one event (fields: its class in ivr/core/event_catalogue.py).
local function emit(etype, data)
  data.ts = NOW
  data.v = VERSION
  return redis.call('XADD', k('events'), 'MAXLEN', '~', MAXLEN, '*', 'type', etype, 'data', cjson.encode(data))
end

local ACTIVE = k('alerts', 'active')
local PENDING = k('alerts', 'pending')
local HISTORY = k('alerts', 'history')
