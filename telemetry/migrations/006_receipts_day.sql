-- Migration 6: the day a receipt counts in, and the input its reservation assumed.
-- `day`: the UTC day a receipt counts in for budgets and totals, the day its call was
-- admitted (a call in flight at midnight counts in the day it started); NULL on older
-- rows means the day of `ts`. `input_estimate`: the input tokens the request's bound
-- gave its reservation, so the surplus a provider bills beyond it can be relearnt at start.
-- (Paid calls in flight are kept in their own file, `pas.db-holds`: see store::holds.)
ALTER TABLE receipts ADD COLUMN day TEXT;
ALTER TABLE receipts ADD COLUMN input_estimate INTEGER;
