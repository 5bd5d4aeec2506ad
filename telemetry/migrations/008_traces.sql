-- Migration 8: traces (SPEC section 13; see src/trace/store.rs).
--
-- One row per span, whoever recorded it (source: pas, file, otlp). A later record of the
-- same (trace_id, span_id) updates the row. Message content is not in this table: input
-- and output hold references (JSON) into trace_contents, where each distinct text is
-- stored once, keyed by its hash, so a system prompt sent in 10,000 calls is one row.
-- IF NOT EXISTS: a database rolled back to an older version by hand migrates again.
-- cost_usd is exact decimal text (never a float). Times are RFC 3339 UTC with
-- milliseconds, fixed width, so text order is time order.
CREATE TABLE IF NOT EXISTS spans (
    trace_id      TEXT    NOT NULL,
    span_id       TEXT    NOT NULL,
    parent_id     TEXT,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    start         TEXT    NOT NULL,
    end           TEXT,
    agent         TEXT,
    job_id        TEXT,
    source        TEXT    NOT NULL,
    provider      TEXT,
    model         TEXT,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    cost_usd      TEXT,
    ttft_ms       REAL,
    receipt_id    TEXT,
    attrs         TEXT    NOT NULL DEFAULT '{}',
    input_ref     TEXT,
    output_ref    TEXT,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS spans_by_job ON spans (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_agent ON spans (agent) WHERE agent IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start);

-- Content-addressed message text: hash is the first 32 hex digits of the SHA-256 of body.
CREATE TABLE IF NOT EXISTS trace_contents (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
