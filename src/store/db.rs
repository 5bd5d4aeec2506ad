//! SQLite telemetry store: `telemetry/pas.db`, one row per card transition and per event.
//!
//! The folder is the state; this database is a queryable record of how the state moved, for
//! `pas log`, the dashboard and cost reports. rusqlite is synchronous, so writes go through one
//! [`TelemetryWriter`] thread fed by a channel: callers never wait on the disk, and whatever
//! arrives together is committed in one transaction (SQLite's cost is per commit, not per row).
//! WAL mode lets CLI reading commands ([`open_read_only`]) read while the daemon writes.
//!
//! Schema changes are numbered migrations in [`MIGRATIONS`]; [`SCHEMA_VERSION`] follows the
//! last one. To add a table (e.g. LLM cost receipts), append `(N, include_str!(...))` with a
//! new SQL file; never edit a migration that has been released.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{FromSql, Type};
use rusqlite::{params, Connection, OpenFlags, Row, TransactionBehavior};

/// Numbered schema migrations, applied in order, each in its own transaction. Versions must
/// run 1, 2, 3, ... without gaps (a test checks this).
pub(crate) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../telemetry/schema.sql")),
    (
        2,
        include_str!("../../telemetry/migrations/002_events_kind.sql"),
    ),
    (
        3,
        include_str!("../../telemetry/migrations/003_receipts.sql"),
    ),
    (
        4,
        include_str!("../../telemetry/migrations/004_receipts_cache_writes.sql"),
    ),
    (
        5,
        include_str!("../../telemetry/migrations/005_receipt_totals.sql"),
    ),
    (
        6,
        include_str!("../../telemetry/migrations/006_receipts_day.sql"),
    ),
    (
        7,
        include_str!("../../telemetry/migrations/007_history_index.sql"),
    ),
    (8, include_str!("../../telemetry/migrations/008_traces.sql")),
    (
        9,
        include_str!("../../telemetry/migrations/009_receipts_replay_of.sql"),
    ),
    (
        10,
        include_str!("../../telemetry/migrations/010_receipts_transcript.sql"),
    ),
];

/// Work a migration needs beyond its SQL, in Rust (exact sums, say).
type Backfill = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Each runs in its migration's transaction, right after its SQL.
const BACKFILLS: &[(u32, Backfill)] = &[(5, super::totals::backfill)];

/// The schema version this binary writes: the last migration's. A database with a higher
/// version was written by a newer pas and is refused rather than misread.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// How long a connection waits for another's lock before failing with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Most rows in one writer transaction, so a burst cannot hold the write lock for long.
const MAX_BATCH: usize = 5000;
/// While records keep coming, commits are at least this far apart. Every commit writes its
/// pages to the WAL, so a thousand gateway calls a second committed one by one write many
/// times the bytes of the same rows committed a hundred a second, on the cores that answer
/// the calls; and a sender finds the writer asleep rather than waiting, so a send is no
/// wake-up. An idle writer still commits the moment a record arrives.
const COMMIT_GAP: Duration = Duration::from_millis(10);

/// One row per card transition. (job_id, n) is unique: n is the index of the transition in the
/// card's `pas.history` list, so replaying history after a crash is idempotent (INSERT OR IGNORE).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct TransitionRow {
    /// The card's id (its file stem).
    pub job_id: String,
    /// Index of this transition in the card's `pas.history`.
    pub n: u32,
    /// When the transition happened (stored to the millisecond).
    pub ts: DateTime<Utc>,
    /// State left, e.g. `inbox`.
    pub from: String,
    /// State entered, e.g. `assigned/director-code`.
    pub to: String,
    /// The agent involved, if any.
    pub agent: Option<String>,
    /// Why, for take-backs and failures.
    pub reason: Option<String>,
}

/// One row per event (SPEC section 11 type names, e.g. "job.assigned"); seq rises by one per
/// event and is assigned by the caller (the daemon continues from [`max_seq`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EventRow {
    /// Stream position; a duplicate seq is ignored, since start-up replay may resend.
    pub seq: u64,
    /// When the event happened (stored to the millisecond).
    pub ts: DateTime<Utc>,
    /// Event type, e.g. `job.assigned`.
    pub kind: String,
    /// The event's payload, stored as JSON text.
    pub data: serde_json::Value,
}

/// Anything the writer stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A card transition.
    Transition(TransitionRow),
    /// A stream event.
    Event(EventRow),
    /// An LLM call attempt.
    Receipt(Box<super::receipts::ReceiptRow>),
    /// A span of a trace, new or updating one stored (see `store::spans`).
    Span(Box<super::spans::SpanRecord>),
}

/// What can go wrong with the telemetry database; every message names the file.
#[derive(thiserror::Error, Debug)]
pub enum DbError {
    /// The folder for the database could not be created.
    #[error("cannot create folder {} for the telemetry database", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file could not be opened or configured.
    #[error("cannot open telemetry database {}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A migration failed; the database stays at the version before it.
    #[error("telemetry database {}: migration to schema version {version} failed", path.display())]
    Migrate {
        path: PathBuf,
        version: u32,
        source: rusqlite::Error,
    },
    /// The database was written by a newer pas.
    #[error(
        "telemetry database {} has schema version {found}, newer than the {known} this pas \
         knows; upgrade pas or move the file away",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    /// A query failed, or a stored value could not be read back.
    #[error("telemetry database {}: query failed", path.display())]
    Query {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the telemetry writer for {}", path.display())]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens (creating the folder and file if needed) and migrates the database at `path`.
///
/// WAL so readers never block the writer; synchronous=NORMAL because in WAL mode it stays
/// consistent after a crash and only the last commits may be lost, which start-up backfill
/// from the cards repairs; a busy timeout so a concurrent reader's checkpoint is waited out.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open_err = open_err(path);
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Some filesystems (network mounts) cannot do WAL; SQLite still works, only slower
        // and with readers blocking the writer, so warn rather than refuse.
        tracing::warn!(path = %path.display(), mode, "telemetry database is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Read-only open for CLI reading commands (no daemon needed). A missing file, or one that was
/// created but never migrated, is `Ok(None)`: there is simply nothing recorded yet.
pub fn open_read_only(path: &Path) -> Result<Option<Connection>, DbError> {
    if !path.exists() {
        return Ok(None);
    }
    let open_err = open_err(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    match stored_version(&conn)? {
        None => Ok(None),
        Some(found) if found > SCHEMA_VERSION => Err(too_new(path, found)),
        Some(_) => Ok(Some(conn)),
    }
}

fn open_err(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + Copy + '_ {
    move |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// The version recorded in `schema_version`, or None when the table does not exist yet.
fn stored_version(conn: &Connection) -> Result<Option<u32>, DbError> {
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'";
    if query(conn, sql, [], |r| r.get::<_, String>(0))?.is_empty() {
        return Ok(None);
    }
    scalar(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version").map(Some)
}

fn too_new(path: &Path, found: u32) -> DbError {
    DbError::TooNew {
        path: path.to_path_buf(),
        found,
        known: SCHEMA_VERSION,
    }
}

/// Applies the migrations the database lacks. Each runs in an IMMEDIATE transaction that
/// re-reads the version first, so two processes opening a fresh file cannot both apply it.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    for &(version, sql) in MIGRATIONS {
        let migrate_err = |source| DbError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migrate_err)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(migrate_err)?;
        let current = stored_version(&tx)?.unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(too_new(path, current));
        }
        if current >= version {
            continue; // already applied; dropping tx ends the transaction
        }
        let stamp =
            format!("DELETE FROM schema_version; INSERT INTO schema_version VALUES ({version});");
        tx.execute_batch(sql).map_err(migrate_err)?;
        for (_, fill) in BACKFILLS.iter().filter(|(v, _)| *v == version) {
            fill(&tx).map_err(migrate_err)?;
        }
        tx.execute_batch(&stamp).map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
        tracing::info!(path = %path.display(), version, "telemetry database migrated");
    }
    Ok(())
}

/// What the writer thread receives.
enum Msg {
    Record(Record),
    /// Answer on this once everything sent before it is committed.
    Flush(mpsc::SyncSender<()>),
    /// Write what is pending and stop, even while [`Sink`]s are still held elsewhere.
    Close,
}

/// A clonable handle that queues records for the writer, for the parts of the daemon that
/// are not the engine (the gateway's receipts, the event hub). Records sent after the
/// writer shut down are logged and dropped.
#[derive(Clone)]
pub struct Sink {
    tx: Sender<Msg>,
}

impl Sink {
    /// Queues a record; never blocks.
    pub fn send(&self, record: Record) {
        queue(&self.tx, record);
    }

    /// Waits, at most `limit`, until everything sent before is committed: for a step that
    /// readers will take as a sign the rows are there (an LLM card reaching done after its
    /// receipt). A writer waiting out a fault does not hold the caller past `limit`.
    pub fn flush_within(&self, limit: Duration) {
        if let Some(ack) = ask_flush(&self.tx) {
            let _ = ack.recv_timeout(limit);
        }
    }
}

/// Asks the writer to answer once all before is committed; `None` when it is gone.
fn ask_flush(tx: &Sender<Msg>) -> Option<Receiver<()>> {
    let (ack_tx, ack_rx) = mpsc::sync_channel(1);
    tx.send(Msg::Flush(ack_tx)).ok().map(|()| ack_rx)
}

fn queue(tx: &Sender<Msg>, record: Record) {
    if matches!(&record, Record::Event(e) if i64::try_from(e.seq).is_err()) {
        // Refused here, not in the batch, where it would fail its neighbours too.
        tracing::error!(?record, "event seq beyond SQLite's integer range; dropped");
    } else if tx.send(Msg::Record(record)).is_err() {
        tracing::error!("telemetry writer is gone; record dropped");
    }
}

/// The writer: its own thread fed by a channel, batching whatever arrived together into one
/// transaction of at most [`MAX_BATCH`] rows.
///
/// A failed batch is logged and retried with backoff, never a panic (see `db_retry.rs`):
/// a fault that passes (another process holding the lock, a full disk) is waited out for
/// as long as the daemon runs, records queueing meanwhile, so none is lost; other errors
/// are given a few attempts, then the batch is dropped with an error log (transitions are
/// recovered at the next start-up from the cards' histories, see
/// [`known_transition_counts`]).
///
/// Dropping the writer without [`shutdown`](Self::shutdown) still writes what is pending, but
/// on the detached thread, with nobody waiting for it.
pub struct TelemetryWriter {
    tx: Sender<Msg>,
    thread: JoinHandle<()>,
    /// Set by `shutdown`: a fault is then waited out for a bounded time only.
    closing: Arc<AtomicBool>,
}

impl TelemetryWriter {
    /// Opens and migrates `path` first, so a bad database is an error at start, then starts
    /// the writer thread.
    pub fn spawn(path: &Path) -> Result<TelemetryWriter, DbError> {
        let conn = open(path)?;
        let (tx, rx) = mpsc::channel();
        let owned = path.to_path_buf();
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let thread = std::thread::Builder::new()
            .name("pas-telemetry".into())
            .spawn(move || {
                crate::store::background_priority();
                writer_loop(conn, &owned, rx, &flag)
            })
            .map_err(|source| DbError::Spawn {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(TelemetryWriter {
            tx,
            thread,
            closing,
        })
    }

    /// Queues a record; never blocks (the channel is unbounded).
    pub fn send(&self, record: Record) {
        queue(&self.tx, record);
    }

    /// A handle for other threads to queue records on.
    pub fn sink(&self) -> Sink {
        Sink {
            tx: self.tx.clone(),
        }
    }

    /// Blocks until everything sent before this call is committed (or given up on).
    pub fn flush(&self) {
        if let Some(ack) = ask_flush(&self.tx) {
            // Err means the thread dropped the ack sender without answering: nothing to wait for.
            let _ = ack.recv();
        }
    }

    /// Writes what is pending and joins the thread.
    pub fn shutdown(self) {
        let TelemetryWriter {
            tx,
            thread,
            closing,
        } = self;
        // The thread drains the queue up to Close and returns; sinks may still be alive.
        closing.store(true, Ordering::SeqCst);
        let _ = tx.send(Msg::Close);
        drop(tx);
        if thread.join().is_err() {
            tracing::error!("telemetry writer thread panicked");
        }
    }
}

/// The writer thread: block for one message, let [`COMMIT_GAP`] pass since the last
/// commit, take whatever else is queued (up to MAX_BATCH rows), commit it, answer the
/// flushes that were in it, repeat until closed. A flush or a close is not kept waiting.
fn writer_loop(mut conn: Connection, path: &Path, rx: Receiver<Msg>, closing: &AtomicBool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::new();
    let mut committed: Option<std::time::Instant> = None;
    while let Ok(first) = rx.recv() {
        let since = committed.map_or(COMMIT_GAP, |c| c.elapsed());
        if matches!(first, Msg::Record(_)) && since < COMMIT_GAP {
            std::thread::sleep(COMMIT_GAP - since);
        }
        let mut next = Some(first);
        let mut closed = false;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(record) => batch.push(record),
                Msg::Flush(ack) => acks.push(ack),
                Msg::Close => closed = true,
            }
            if batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => next = Some(msg),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
        }
        if !batch.is_empty() {
            super::db_retry::write_with_retry(&mut conn, path, &batch, closing);
            batch.clear();
            committed = Some(std::time::Instant::now());
        }
        for ack in acks.drain(..) {
            let _ = ack.send(()); // the flusher may have gone; nothing to do then
        }
        if closed {
            break;
        }
    }
}

/// Inserts one batch in one transaction. Duplicates are ignored: start-up replay resends.
pub(super) fn write_batch(conn: &mut Connection, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut totals = super::totals::Pending::default();
    {
        let mut transition = tx.prepare_cached(
            "INSERT OR IGNORE INTO transitions (job_id, n, ts, from_state, to_state, agent, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut event = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (seq, ts, kind, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for record in batch {
            match record {
                Record::Transition(t) => {
                    transition.execute(params![
                        t.job_id,
                        t.n,
                        ts_text(&t.ts),
                        t.from,
                        t.to,
                        t.agent,
                        t.reason
                    ])?;
                }
                Record::Event(e) => {
                    event.execute(params![e.seq, ts_text(&e.ts), e.kind, e.data.to_string()])?;
                }
                Record::Receipt(r) => {
                    if super::receipts::insert_only(&tx, r)? {
                        totals.add(r);
                    }
                }
                Record::Span(s) => super::spans::upsert(&tx, s)?,
            }
        }
    }
    totals.apply(&tx)?;
    tx.commit()
}

/// RFC 3339, UTC, milliseconds, `Z`: fixed width, so text order is time order.
pub(crate) fn ts_text(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs a query and maps its rows; errors name the file behind `conn`.
fn query<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, DbError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_map(params, map)?.collect())
        .map_err(|source| DbError::Query {
            path: PathBuf::from(conn.path().filter(|p| !p.is_empty()).unwrap_or(":memory:")),
            source,
        })
}

/// Reads a timestamp column written by [`ts_text`].
fn ts_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(idx)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|ts| ts.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// The first column of a one-row, one-number query.
fn scalar<T: FromSql + Default>(conn: &Connection, sql: &str) -> Result<T, DbError> {
    Ok(query(conn, sql, [], |r| r.get(0))?
        .pop()
        .unwrap_or_default())
}

/// The highest event seq stored, 0 when there is none; the daemon continues from here.
pub fn max_seq(conn: &Connection) -> Result<u64, DbError> {
    scalar(conn, "SELECT COALESCE(MAX(seq), 0) FROM events")
}

/// How many transitions are stored in all.
pub fn transition_count(conn: &Connection) -> Result<u64, DbError> {
    scalar(conn, "SELECT COUNT(*) FROM transitions")
}

/// The transitions of one job, ordered by their index in its history.
pub fn transitions_for(conn: &Connection, job_id: &str) -> Result<Vec<TransitionRow>, DbError> {
    let sql = "SELECT job_id, n, ts, from_state, to_state, agent, reason FROM transitions
               WHERE job_id = ?1 ORDER BY n";
    query(conn, sql, [job_id], |r| {
        Ok(TransitionRow {
            job_id: r.get(0)?,
            n: r.get(1)?,
            ts: ts_column(r, 2)?,
            from: r.get(3)?,
            to: r.get(4)?,
            agent: r.get(5)?,
            reason: r.get(6)?,
        })
    })
}

/// Up to `limit` events with seq greater than `since`, in seq order (for `?since=N` paging).
pub fn events_since(conn: &Connection, since: u64, limit: usize) -> Result<Vec<EventRow>, DbError> {
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = "SELECT seq, ts, kind, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2";
    query(conn, sql, [since, limit], |r| {
        let data: String = r.get(3)?;
        Ok(EventRow {
            seq: r.get(0)?,
            ts: ts_column(r, 1)?,
            kind: r.get(2)?,
            data: serde_json::from_str(&data).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e))
            })?,
        })
    })
}

/// The epochs an agent has held, from its registration events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Epochs {
    /// The highest epoch it registered with.
    pub registered: u64,
    /// The highest epoch that was deregistered; a new registration must rise above it.
    pub retired: u64,
}

/// agent -> the epochs it held. Read at start-up, so beats and completions of an old
/// incarnation stay fenced even after its registration file is gone.
pub fn agent_epochs(conn: &Connection) -> Result<HashMap<String, Epochs>, DbError> {
    let sql = "SELECT json_extract(data, '$.agent'), kind,
                      MAX(CAST(json_extract(data, '$.epoch') AS INTEGER))
               FROM events WHERE kind IN ('agent.registered', 'agent.deregistered')
               AND json_extract(data, '$.epoch') IS NOT NULL
               GROUP BY 1, 2";
    let rows = query(conn, sql, [], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out: HashMap<String, Epochs> = HashMap::new();
    for (agent, kind, epoch) in rows {
        let (Some(agent), Ok(epoch)) = (agent, u64::try_from(epoch)) else {
            continue;
        };
        let e = out.entry(agent).or_default();
        if kind == "agent.registered" {
            e.registered = e.registered.max(epoch);
        } else {
            e.retired = e.retired.max(epoch);
        }
    }
    Ok(out)
}

/// job_id -> number of stored transitions. At start-up the daemon compares this with each
/// card's history length and resends the missing entries (duplicates are ignored).
pub fn known_transition_counts(conn: &Connection) -> Result<HashMap<String, u32>, DbError> {
    let sql = "SELECT job_id, COUNT(*) FROM transitions GROUP BY job_id";
    Ok(query(conn, sql, [], |r| Ok((r.get(0)?, r.get(1)?)))?
        .into_iter()
        .collect())
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
