-- Migration 5: running totals of the receipts per UTC day, provider, model, agent, job and
-- how the attempt ended,
-- so `pas costs`, `pas status` and the dashboard read a few rows instead of every receipt
-- (a busy month is millions). The writer keeps them in the transaction that inserts each
-- receipt; the migration fills them from the receipts already there (in rust_decimal, as
-- SQL would sum TEXT money as floats). cost_usd is the exact sum of the priced receipts;
-- unpriced counts the others. '' stands for "no agent" / "no job" (part of the key).
CREATE TABLE receipt_totals (
    day           TEXT    NOT NULL,             -- UTC date of the receipt's ts, YYYY-MM-DD
    provider      TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    agent         TEXT    NOT NULL,
    job_id        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,             -- ok, cut, or the error's kind (http_429, ...)
    calls         INTEGER NOT NULL,
    unpriced      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd      TEXT    NOT NULL,
    PRIMARY KEY (day, provider, model, agent, job_id, kind)
) WITHOUT ROWID;
