-- Migration 7: the history index (which commits touched which card) and the repository's
-- size over time (see src/store/git/hindex.rs and src/store/git/upkeep.rs).
--
-- `pas log ID` and the dashboard's job page read a card's commits here instead of walking
-- the whole log. The git worker appends each commit right after making it; `pas reindex`
-- (and the daemon at start, in steps) rebuilds everything from git in one pass. The index
-- is trusted only up to `history_state.head`: every commit reachable from that commit is
-- indexed, and a reader whose HEAD is a descendant of it reads the few commits past it
-- from git; any other HEAD (a reset, a fresh clone, a missing row) means one pass over git.
--
-- IF NOT EXISTS: a table deleted by hand is made again with this same text (hindex.rs).

-- One row per commit that touched a card. seq is the commit's place in HEAD's history,
-- oldest first (git's topological order), so a card's history is read by seq, newest first.
CREATE TABLE IF NOT EXISTS history_commits (
    seq    INTEGER PRIMARY KEY,
    oid    TEXT    NOT NULL UNIQUE,
    time   INTEGER NOT NULL,  -- commit time, seconds since the epoch (git's resolution)
    author TEXT    NOT NULL
);

-- One row per (card, commit): the message lines naming the card (or the subject when none
-- does) and the card's paths under work/ that the commit added, changed or removed, both
-- as JSON arrays of strings.
CREATE TABLE IF NOT EXISTS history_cards (
    job_id TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    lines  TEXT    NOT NULL,
    paths  TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

-- The one row saying how far the index reaches: `head` and every commit reachable from it
-- are indexed; `commits` is how many commits that is (cards touched or not).
CREATE TABLE IF NOT EXISTS history_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    head    TEXT    NOT NULL,
    commits INTEGER NOT NULL,
    updated TEXT    NOT NULL
);

-- The repository's size as the daemon's upkeep measured it (every few dozen commits, and
-- before and after each repack), for the growth figures of `pas status --json` and
-- /metrics. Rows older than a week are deleted as new ones come.
CREATE TABLE IF NOT EXISTS repo_samples (
    id            INTEGER PRIMARY KEY,
    ts            TEXT    NOT NULL,
    commits       INTEGER,            -- commits on HEAD (the index's count), when known
    loose_objects INTEGER NOT NULL,
    loose_bytes   INTEGER NOT NULL,
    packs         INTEGER NOT NULL,
    pack_bytes    INTEGER NOT NULL,
    event         TEXT    NOT NULL    -- 'sample', 'before_repack' or 'after_repack'
);
CREATE INDEX IF NOT EXISTS repo_samples_ts ON repo_samples (ts);
