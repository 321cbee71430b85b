-- A new campaign in draft (lib/campaigns.lua CP.create). A = spec (JSON: name, plan, queue, caller_id,
-- hotline, language, pacing, window, retries (each JSON text, checked by the store), ring_s), by,
-- now (ms, '' = the server's). Returns the campaign (JSON of its hash).
CP.clock(A[3])
local ok, f = pcall(cjson.decode, A[1])
if not ok or type(f) ~= 'table' then CP.fail('invalid', 'the campaign spec is not JSON') end
if type(f.name) ~= 'string' or type(f.plan) ~= 'string' or type(f.pacing) ~= 'string'
   or type(f.retries) ~= 'string' or not tonumber(f.ring_s) then
  CP.fail('invalid', 'the campaign spec lacks a field')
end
local id = CP.create(f, A[2])
return CP.view(id)
