-- Add records to a campaign (lib/campaigns.lua CP.add_records). A = id, rows (JSON list of {number,
-- name, tz, variables (JSON text)}, checked and normalised by the store, at most 2000), now.
-- Returns {added, dnc, duplicates (JSON list of positions), zones full (JSON list of positions)}.
CP.clock(A[3])
local ok, rows = pcall(cjson.decode, A[2])
if not ok or type(rows) ~= 'table' then CP.fail('invalid', 'the rows are not JSON') end
if #rows > 2000 then CP.fail('invalid', 'at most 2000 rows a batch') end
for _, row in ipairs(rows) do
  if type(row) ~= 'table' or type(row.number) ~= 'string' or not string.match(row.number, '^%+?[0-9]+$')
     or #row.number > 21 then
    CP.fail('invalid', 'a row has no valid number')
  end
end
local res = CP.add_records(A[1], rows)
return {res[1], res[2], cjson.encode(res[3]), cjson.encode(res[4])}
