-- Shared helpers of the webhook outbox scripts (see ivr/queues/outbox.py), prepended to each.
-- ARGV[1] = key prefix; script arguments start at ARGV[2]. Key names mirror ivr/queues/keys.py.
local P = ARGV[1]
local A = {}
for i = 2, #ARGV do A[#A + 1] = ARGV[i] end

local function k(...) return P .. ':' .. table.concat({...}, ':') end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

local function delivery_key(did) return k('webhook', did) end
local function queue_key(ep) return k('webhooks', ep, 'queue') end
local function inflight_key(ep) return k('webhooks', ep, 'inflight') end
local function dead_key(ep) return k('webhooks', ep, 'dead') end
local function state_key(ep) return k('webhooks', ep, 'state') end
