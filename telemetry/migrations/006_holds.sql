-- Migration 6: money that survives a crash.
-- `holds`: the budget hold of every paid call in flight, written before its upstream is
-- called and deleted in the transaction that inserts its receipt. A row still here at
-- start-up is a call that pas was killed during (kill -9, a crash, power): it becomes an
-- `interrupted` receipt at its reserved worst case, since the provider may have billed it.
-- `receipts.day`: the UTC day a receipt counts in for budgets and totals, the day its
-- call was admitted (a call in flight at midnight counts in the day it started); NULL on
-- older rows means the day of `ts`. `receipts.input_estimate`: the input tokens its
-- reservation assumed, so the surplus a provider bills beyond it can be relearnt.
ALTER TABLE receipts ADD COLUMN day TEXT;
ALTER TABLE receipts ADD COLUMN input_estimate INTEGER;
CREATE TABLE holds (
    id           TEXT    PRIMARY KEY,          -- the id its receipt will have
    request_id   TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    ts           TEXT    NOT NULL,             -- when it was admitted
    day          TEXT    NOT NULL,             -- the UTC day it counts in, YYYY-MM-DD
    job_id       TEXT,
    agent        TEXT,
    provider     TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    reserved_usd TEXT    NOT NULL,             -- exact decimal text
    stream       INTEGER NOT NULL
);
