-- pas telemetry schema, migration 1 (see src/store/db.rs, MIGRATIONS).
--
-- Once released this file is frozen: a database that has applied version 1 never reads it
-- again. Later changes (LLM cost receipts, new indexes) go in new files appended to MIGRATIONS
-- as version 2, 3, ... The table schema_version is created and kept by db.rs, not here.
--
-- Timestamps are RFC 3339 text in UTC with milliseconds ("2025-01-31T09:15:02.417Z"): fixed
-- width, so text order is time order and range queries on ts can use an index.

-- One row per job-card transition; mirrors one entry of the card's `pas.history` list.
-- (job_id, n) is unique, n being the entry's index, so replaying a history after a crash
-- (INSERT OR IGNORE) cannot duplicate rows.
CREATE TABLE transitions (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT    NOT NULL,
    n          INTEGER NOT NULL CHECK (n >= 0),
    ts         TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    agent      TEXT,
    reason     TEXT,
    UNIQUE (job_id, n)
);

-- "What happened between these times" (pas log, dashboard activity and time slider).
CREATE INDEX transitions_ts ON transitions (ts);

-- One row per event of the stream (SPEC section 11). seq is assigned by the daemon and rises
-- by one per event, so it doubles as the key and the resume point of `/ws?since=N`.
CREATE TABLE events (
    seq  INTEGER PRIMARY KEY CHECK (seq >= 0),
    ts   TEXT    NOT NULL,
    kind TEXT    NOT NULL,
    data TEXT    NOT NULL
);
