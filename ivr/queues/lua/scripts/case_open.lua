-- Open a complaint case (status open; ivr/queues/store.py open_case), linked to call `call_id` when
-- given, and emit case.opened. A = tier, reason, customer, customer_name, crm_id, hotline, owner,
-- opened_by, call_id ('' = none), due_at (ms), now (ms, '' = the server's clock), join ('1': when the
-- customer has an unfinished case, take the newest instead of opening a second: the call is linked
-- to it, case.call_linked; store.open_or_join_case).
-- Returns {'1' when an existing case was taken else '0', the case (JSON)}.
CS.clock(A[11])
local f = {tier = CS.check_tier(A[1]), reason = CS.check_len('reason', A[2], 200),
           customer = CS.check_len('customer', A[3], 32, 33), customer_name = CS.check_len('customer_name', A[4], 100),
           crm_id = CS.check_len('crm_id', A[5], 64), hotline = CS.check_len('hotline', A[6], 120),
           owner = CS.check_name('owner', A[7], 64), opened_by = CS.check_len('opened_by', A[8], 100, 100),
           due_at = CS.ms('due_at', A[10])}
local cid = CS.check_name('call_id', A[9], 64)
if f.opened_by == '' then CS.fail('invalid', 'opened_by is required') end
if A[12] == '1' and f.customer ~= '' then
  local found = CS.customer_cases(f.customer, 1)[1]
  if found then
    local c = CS.load(found)
    if cid ~= '' and CS.link_call(found, c, cid) then
      redis.call('HSET', k('case', found), 'updated_at', NOW)
      redis.call('HINCRBY', k('case', found), 'version', 1)
      emit('case.call_linked', {case_id = found, call_id = cid, agent_id = c.owner or '', by = f.opened_by})
    end
    return {'1', CS.view(found)}
  end
end
local id = CS.create(f)
if cid ~= '' then CS.link_call(id, {calls = '[]'}, cid) end
emit('case.opened', {case_id = id, tier = f.tier, status = 'open', reason = f.reason, customer = f.customer,
                     agent_id = f.owner, due_at = f.due_at, opened_by = f.opened_by, call_id = cid,
                     hotline = f.hotline})
return {'0', CS.view(id)}
