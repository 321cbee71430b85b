-- Apply the escalation steps that are due (housekeeping does this too). A = most calls to escalate.
-- Returns the number of calls escalated.
return R.escalate_due(tonumber(A[1]))
