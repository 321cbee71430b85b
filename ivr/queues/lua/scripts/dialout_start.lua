-- Place an automated call (lib/dialout.lua DO.start). A = call_id, spec (JSON object: number,
-- caller_id, hotline, plan, language, variables (JSON text), purpose, ring_s, queue, case_id,
-- campaign, record). Returns the worker it was given to.
local ok, spec = pcall(cjson.decode, A[2])
if not ok or type(spec) ~= 'table' then return redis.error_reply('request.invalid the dialout spec is not JSON') end
local w, err = DO.start(A[1], spec)
if not w then return err end
return w
