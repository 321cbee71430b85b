-- An automated call was answered: it enters its dial plan (lib/dialout.lua DO.answered).
-- A = call_id, offer_id. Returns 1, or 0 when the offer is stale (the call was ended meanwhile).
return DO.answered(A[1], A[2]) and 1 or 0
