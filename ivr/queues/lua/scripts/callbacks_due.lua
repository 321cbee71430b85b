-- Callbacks whose retry is due compete for agents again (housekeeping does this too).
-- A = most callbacks to release. Returns the number released.
return CB.release_due(tonumber(A[1]))
