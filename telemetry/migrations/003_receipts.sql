-- Migration 3: one row per LLM call attempt (SPEC section 7). Money is a decimal string
-- (never REAL): sums are done in rust_decimal. cost_usd is NULL when the model has no
-- price, which is not the same as free ("0").
CREATE TABLE receipts (
    id               TEXT    PRIMARY KEY,          -- ULID of this receipt
    request_id       TEXT    NOT NULL,             -- one per gateway request or LLM card run
    attempt          INTEGER NOT NULL,             -- 1, 2, ... as fallback moves on
    ts               TEXT    NOT NULL,             -- when the attempt started, RFC 3339 UTC ms
    job_id           TEXT,
    agent            TEXT,
    provider         TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    cached_tokens    INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    usage_source     TEXT    NOT NULL CHECK (usage_source IN ('provider', 'estimated')),
    cost_usd         TEXT,
    latency_ms       REAL    NOT NULL,
    ttft_ms          REAL,                          -- time to first token, streams only
    stream           INTEGER NOT NULL,
    status           TEXT    NOT NULL,              -- ok | error | cut
    error            TEXT
);
CREATE INDEX receipts_ts ON receipts (ts);
CREATE INDEX receipts_job ON receipts (job_id);
