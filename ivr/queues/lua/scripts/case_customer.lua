-- A customer's unfinished cases (open, contacted, reopened), newest first (ivr/queues/store.py
-- open_cases_for; a repeat caller is recognised by them). A = customer number (checked by the store),
-- limit. Returns the cases (JSON each).
local customer = CS.check_len('customer', A[1], 32, 33)
local limit = tonumber(A[2]) or 0
if customer == '' or limit < 1 or limit > 20 then CS.fail('invalid', 'a customer number and a limit of 1-20') end
local out = {}
for _, id in ipairs(CS.customer_cases(customer, limit)) do out[#out + 1] = CS.view(id) end
return out
