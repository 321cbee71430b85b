-- One run of the campaign dialler (lib/campaigns.lua CP.tick), on the worker holding the
-- housekeeping lease. A = now (ms, '' = the server's), open (JSON object: campaign id -> list of
-- its open time zone numbers, for campaigns with a calling window), budget (calls at most, 1-200).
-- Returns {placed, no worker had a slot (0/1), progress events sent}.
CP.clock(A[1])
local ok, open = pcall(cjson.decode, A[2])
if not ok or type(open) ~= 'table' then CP.fail('invalid', 'open is not a JSON object') end
local budget = tonumber(A[3])
if not budget or budget < 1 or budget > 200 then CP.fail('invalid', 'budget must be 1-200') end
return CP.tick(open, math.floor(budget))
