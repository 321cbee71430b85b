-- Change a campaign's settings. A = id, fields (JSON object; values checked by the store: name, plan,
-- queue, caller_id, hotline, language, ring_s, retries (JSON text) only while draft; pacing and
-- window (JSON text, '' = no window) while draft, running or paused), now. Returns the campaign.
CP.clock(A[3])
local c = CP.load(A[1])
local ok, f = pcall(cjson.decode, A[2])
if not ok or type(f) ~= 'table' then CP.fail('invalid', 'the fields are not JSON') end
local ANY = {pacing = true, window = true}
local DRAFT = {name = true, plan = true, queue = true, caller_id = true, hotline = true, language = true,
               ring_s = true, retries = true}
local args = {'HSET', CP.key(A[1]), 'updated_at', NOW}
for name, v in pairs(f) do
  if ANY[name] then
    if c.state ~= 'draft' and c.state ~= 'running' and c.state ~= 'paused' then
      CP.fail('bad_transition', A[1] .. ' is ' .. c.state .. ': its settings are final')
    end
  elseif DRAFT[name] then
    if c.state ~= 'draft' then CP.fail('bad_transition', A[1] .. ' is ' .. c.state .. ': only pacing and window change') end
  else
    CP.fail('invalid', 'unknown field ' .. tostring(name))
  end
  args[#args + 1] = name
  args[#args + 1] = tostring(v)
end
redis.call(unpack(args))
redis.call('HINCRBY', CP.key(A[1]), 'version', 1)
-- a new rate: the bucket keeps what it holds, capped by the new cap
if f.pacing then
  local p = cjson.decode(f.pacing)
  local cap = math.max(1, tonumber(p.rate_per_s) or 1)
  local tokens = math.min(cap, tonumber(c.tokens) or 0)
  redis.call('HSET', CP.key(A[1]), 'tokens', tostring(tokens))
end
return CP.view(A[1])
