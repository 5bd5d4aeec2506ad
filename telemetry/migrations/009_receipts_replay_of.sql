-- Migration 9: a receipt names the recorded call it replays (SPEC section 13), as
-- `TRACE_ID/SPAN_ID`; NULL for every other call.
ALTER TABLE receipts ADD COLUMN replay_of TEXT;
