-- Migration 10: receipts whose counts an agent reported in its transcript, for calls that
-- did not pass through the gateway (SPEC section 16: `source: transcript`). SQLite cannot
-- change a CHECK in place, so the table is rebuilt with the same columns and indexes.
CREATE TABLE receipts_new (
    id                    TEXT    PRIMARY KEY,
    request_id            TEXT    NOT NULL,
    attempt               INTEGER NOT NULL,
    ts                    TEXT    NOT NULL,
    job_id                TEXT,
    agent                 TEXT,
    provider              TEXT    NOT NULL,
    model                 TEXT    NOT NULL,
    input_tokens          INTEGER NOT NULL DEFAULT 0,
    output_tokens         INTEGER NOT NULL DEFAULT 0,
    cached_tokens         INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens      INTEGER NOT NULL DEFAULT 0,
    usage_source          TEXT    NOT NULL CHECK (usage_source IN ('provider', 'estimated', 'transcript')),
    cost_usd              TEXT,
    latency_ms            REAL    NOT NULL,
    ttft_ms               REAL,
    stream                INTEGER NOT NULL,
    status                TEXT    NOT NULL,
    error                 TEXT,
    cache_write_tokens    INTEGER NOT NULL DEFAULT 0,
    cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
    day                   TEXT,
    input_estimate        INTEGER,
    replay_of             TEXT
);
INSERT INTO receipts_new (id, request_id, attempt, ts, job_id, agent, provider, model,
    input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_usd,
    latency_ms, ttft_ms, stream, status, error, cache_write_tokens, cache_write_1h_tokens,
    day, input_estimate, replay_of)
SELECT id, request_id, attempt, ts, job_id, agent, provider, model,
    input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_usd,
    latency_ms, ttft_ms, stream, status, error, cache_write_tokens, cache_write_1h_tokens,
    day, input_estimate, replay_of
FROM receipts;
DROP TABLE receipts;
ALTER TABLE receipts_new RENAME TO receipts;
CREATE INDEX receipts_ts ON receipts (ts);
CREATE INDEX receipts_job ON receipts (job_id);
