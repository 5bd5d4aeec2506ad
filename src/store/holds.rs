//! Durable budget holds: every paid call in flight has a row in `holds`, written before
//! its upstream is called. A row left at start-up whose receipt never made it to the
//! database is a call pas was killed during: the provider may have billed it, so
//! [`Holds::recover`] turns it into an `interrupted` receipt at its reserved worst case,
//! counted in the totals and so in the budgets.
//!
//! The holds live in their own file, `telemetry/pas.db-holds` (covered by the workspace's
//! `pas.db-*` ignore line), on one connection only the gateway uses. In `pas.db` itself,
//! each hold's insert had to take SQLite's write lock next to the batching writer: a call
//! arriving during a batch slept in SQLite's busy handler (a millisecond and up, and the
//! writer runs at a lower priority), which took the gateway's p99 overhead from 0.3-0.5
//! to 5-6 ms at 1,000 requests/s. Here no other connection ever writes.
//!
//! A hold is deleted only once its receipt is committed in `pas.db`: every [`SWEEP_EVERY`]
//! holds written (and at start), one statement deletes the holds whose receipt exists
//! there (`pas.db` attached and only read; in WAL mode reading never waits for the writer).
//! So a crash leaves either a committed receipt (its hold, if still here, is dropped at
//! start, not booked again: receipts and holds share the receipt's id) or a hold to book.
//! The file is WAL with `synchronous=OFF`: a commit is a write to the OS, which survives
//! the process being killed (the point), not a power cut (which can lose the last
//! receipts too).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, TransactionBehavior};
use rust_decimal::Decimal;

use super::db;
use super::receipts::{self, ReceiptRow};
use crate::llm::cost::{Usage, UsageSource};

/// One paid call in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldRow {
    /// The id its receipt will have (so a recovered receipt and a late one are the same).
    pub id: String,
    pub request_id: String,
    pub attempt: u32,
    /// When it was admitted.
    pub ts: DateTime<Utc>,
    /// The UTC day it counts in.
    pub day: NaiveDate,
    pub job_id: Option<String>,
    pub agent: Option<String>,
    pub provider: String,
    pub model: String,
    pub reserved_usd: Decimal,
    pub stream: bool,
}

/// The status of a receipt recovered from a hold.
pub const INTERRUPTED: &str = "interrupted";

/// How many holds are written between two sweeps of the settled ones: the table stays
/// at the calls in flight plus at most this many settled, and the sweep's cost (a lookup
/// per row) is spread over as many calls.
pub const SWEEP_EVERY: u32 = 64;

/// The holds file next to the telemetry database at `db`.
pub fn path_for(db: &Path) -> PathBuf {
    db.with_file_name("pas.db-holds")
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS holds (
    id           TEXT    PRIMARY KEY,          -- the id its receipt will have
    request_id   TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    ts           TEXT    NOT NULL,             -- when it was admitted, RFC 3339 UTC ms
    day          TEXT    NOT NULL,             -- the UTC day it counts in, YYYY-MM-DD
    job_id       TEXT,
    agent        TEXT,
    provider     TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    reserved_usd TEXT    NOT NULL,             -- exact decimal text
    stream       INTEGER NOT NULL
)";

struct Conn {
    conn: Connection,
    /// Holds written since the last sweep.
    written: u32,
}

/// The gateway's connection to the holds file.
pub struct Holds {
    conn: Mutex<Conn>,
    db: PathBuf,
}

impl Holds {
    /// Opens (creating) the holds file of the telemetry database at `db`, which must
    /// exist and be migrated (the writer does that first).
    pub fn open(db: &Path) -> anyhow::Result<Holds> {
        let path = path_for(db);
        let conn =
            Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // Only this connection ever opens the file: keeping its lock (of `main` only,
            // never of the attached `pas.db`) saves the lock and shared-memory calls of
            // every transaction.
            conn.query_row("PRAGMA main.locking_mode = EXCLUSIVE", [], |r| {
                r.get::<_, String>(0)
            })?;
            conn.query_row("PRAGMA main.journal_mode = WAL", [], |r| {
                r.get::<_, String>(0)
            })?;
            conn.execute_batch("PRAGMA main.synchronous = OFF")?;
            conn.execute_batch(SCHEMA)?;
            // Attached by its plain path (a URI would misread `?`, `#` or `%` in a
            // workspace's path); only ever read, so it takes no write lock.
            conn.execute("ATTACH DATABASE ?1 AS tel", [db.to_string_lossy()])?;
            Ok(())
        };
        setup().with_context(|| format!("cannot set up {}", path.display()))?;
        Ok(Holds {
            conn: Mutex::new(Conn { conn, written: 0 }),
            db: db.to_path_buf(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the hold of a call about to be sent (committed when this returns); every
    /// [`SWEEP_EVERY`] holds, first deletes those whose receipts are committed.
    pub fn put(&self, h: &HoldRow) -> rusqlite::Result<()> {
        let mut c = self.lock();
        c.written += 1;
        if c.written >= SWEEP_EVERY {
            c.written = 0;
            if let Err(e) = sweep(&c.conn) {
                tracing::warn!("cannot sweep the settled holds (tried again later): {e}");
            }
        }
        c.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO holds (id, request_id, attempt, ts, day, job_id, agent,
                     provider, model, reserved_usd, stream)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                h.id,
                h.request_id,
                h.attempt,
                db::ts_text(&h.ts),
                h.day.to_string(),
                h.job_id,
                h.agent,
                h.provider,
                h.model,
                h.reserved_usd.to_string(),
                h.stream,
            ])?;
        Ok(())
    }

    /// Deletes the hold of a call that gets no receipt (nothing was sent).
    pub fn forget(&self, id: &str) -> rusqlite::Result<()> {
        let c = self.lock();
        c.conn
            .prepare_cached("DELETE FROM holds WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// The holds not yet swept (in flight, or settled since the last sweep).
    pub fn left(&self) -> rusqlite::Result<Vec<HoldRow>> {
        all(&self.lock().conn)
    }

    /// Books every hold a run left without a committed receipt as an `interrupted`
    /// receipt stamped `now` (counting in its hold's day), in one transaction of the
    /// telemetry database, then empties the holds; returns the receipts written. A crash
    /// in between books nothing twice: the receipts' ids are the holds'.
    pub fn recover(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<ReceiptRow>> {
        let c = self.lock();
        let left = all(&c.conn)?;
        let mut out = Vec::new();
        if !left.is_empty() {
            let mut tel = db::open(&self.db)?;
            let tx = tel.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut totals = super::totals::Pending::default();
            for h in left {
                let r = interrupted(&h, now);
                if receipts::insert_only(&tx, &r)? {
                    totals.add(&r);
                    out.push(r);
                }
            }
            totals.apply(&tx)?;
            tx.commit()?;
        }
        c.conn.execute("DELETE FROM holds", [])?;
        Ok(out)
    }
}

/// Deletes the holds whose receipts are committed in the telemetry database.
fn sweep(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM holds WHERE EXISTS (SELECT 1 FROM tel.receipts r WHERE r.id = holds.id)",
    )?
    .execute([])
}

/// Every hold in the table, oldest first (an unreadable row is skipped, said).
pub fn all(conn: &Connection) -> rusqlite::Result<Vec<HoldRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, request_id, attempt, ts, day, job_id, agent, provider, model, reserved_usd,
                stream
         FROM holds ORDER BY ts, id",
    )?;
    let rows = stmt.query_map([], |r| {
        let ts: String = r.get(3)?;
        let day: String = r.get(4)?;
        let reserved: String = r.get(9)?;
        Ok((
            HoldRow {
                id: r.get(0)?,
                request_id: r.get(1)?,
                attempt: r.get(2)?,
                ts: DateTime::parse_from_rfc3339(&ts)
                    .map(|t| t.to_utc())
                    .unwrap_or_default(),
                day: day.parse().unwrap_or_default(),
                job_id: r.get(5)?,
                agent: r.get(6)?,
                provider: r.get(7)?,
                model: r.get(8)?,
                reserved_usd: Decimal::ZERO,
                stream: r.get(10)?,
            },
            reserved,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut h, reserved) = row?;
        match reserved.parse::<Decimal>() {
            Ok(c) => h.reserved_usd = c,
            Err(e) => {
                tracing::error!(hold = %h.id, reserved, "a hold's reserved amount is not a \
                    decimal ({e}): booked at $0, check the provider's bill");
            }
        }
        out.push(h);
    }
    Ok(out)
}

/// The receipt of a call pas was killed during: its reserved worst case, since nothing
/// says what the provider billed, and spend forgotten is worse than spend overstated.
fn interrupted(h: &HoldRow, now: DateTime<Utc>) -> ReceiptRow {
    ReceiptRow {
        id: h.id.clone(),
        request_id: h.request_id.clone(),
        attempt: h.attempt,
        ts: now,
        job_id: h.job_id.clone(),
        agent: h.agent.clone(),
        provider: h.provider.clone(),
        model: h.model.clone(),
        usage: Usage {
            source: UsageSource::Estimated,
            ..Usage::default()
        },
        cost_usd: Some(h.reserved_usd),
        latency_ms: (now - h.ts).num_milliseconds().max(0) as f64,
        ttft_ms: None,
        stream: h.stream,
        status: INTERRUPTED.to_string(),
        error: Some(format!(
            "pas stopped without finishing this call (killed or crashed; admitted {}): \
             booked at its reserved worst case, as the provider may have billed it",
            db::ts_text(&h.ts)
        )),
        day: Some(h.day),
        input_estimate: None,
        replay_of: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_without_a_committed_receipt_becomes_an_interrupted_receipt_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pas.db");
        let mut conn = db::open(&path).unwrap();
        let holds = Holds::open(&path).unwrap();
        let now = Utc::now();
        let day: NaiveDate = "2026-01-31".parse().unwrap();
        let hold = |id: &str| HoldRow {
            id: id.into(),
            request_id: format!("req-{id}"),
            attempt: 1,
            ts: now,
            day,
            job_id: Some("J1".into()),
            agent: None,
            provider: "p".into(),
            model: "m".into(),
            reserved_usd: "0.0123".parse().unwrap(),
            stream: false,
        };
        for id in ["a", "b", "c"] {
            holds.put(&hold(id)).unwrap();
        }
        holds.forget("c").unwrap();
        // "a" settled: its receipt is committed, its hold not swept yet (a crash now).
        let settled = ReceiptRow {
            id: "a".into(),
            ts: now,
            provider: "p".into(),
            model: "m".into(),
            status: "ok".into(),
            cost_usd: Some("0.001".parse().unwrap()),
            ..ReceiptRow::default()
        };
        db::write_batch(&mut conn, &[db::Record::Receipt(Box::new(settled))]).unwrap();
        let got = holds.recover(now).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].id, "b");
        assert_eq!(got[0].status, INTERRUPTED);
        assert_eq!(got[0].cost_usd, Some("0.0123".parse().unwrap()));
        assert!(holds.left().unwrap().is_empty());
        let totals = super::super::totals::since(&conn, None).unwrap();
        let t = totals.iter().find(|t| t.kind == INTERRUPTED).unwrap();
        assert_eq!((t.day, t.cost_usd), (day, "0.0123".parse().unwrap()));
        assert_eq!(
            totals.iter().map(|t| t.cost_usd).sum::<Decimal>(),
            "0.0133".parse().unwrap(),
            "the settled call counts once, at its real cost"
        );
        // A second start finds nothing left.
        assert!(holds.recover(now).unwrap().is_empty());
    }

    #[test]
    fn settled_holds_are_swept_once_their_receipts_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pas.db");
        let mut conn = db::open(&path).unwrap();
        let holds = Holds::open(&path).unwrap();
        let row = |id: String| HoldRow {
            id,
            request_id: "r".into(),
            attempt: 1,
            ts: Utc::now(),
            day: "2026-01-31".parse().unwrap(),
            job_id: None,
            agent: None,
            provider: "p".into(),
            model: "m".into(),
            reserved_usd: Decimal::ONE,
            stream: false,
        };
        let ids: Vec<String> = (0..SWEEP_EVERY).map(|i| format!("h{i:03}")).collect();
        for id in &ids[..SWEEP_EVERY as usize - 1] {
            holds.put(&row(id.clone())).unwrap();
        }
        // All but the last two settle.
        let receipts: Vec<db::Record> = ids[..SWEEP_EVERY as usize - 3]
            .iter()
            .map(|id| {
                db::Record::Receipt(Box::new(ReceiptRow {
                    id: id.clone(),
                    ts: Utc::now(),
                    status: "ok".into(),
                    ..ReceiptRow::default()
                }))
            })
            .collect();
        db::write_batch(&mut conn, &receipts).unwrap();
        assert_eq!(holds.left().unwrap().len(), SWEEP_EVERY as usize - 1);
        holds
            .put(&row(ids[SWEEP_EVERY as usize - 1].clone()))
            .unwrap();
        let left: Vec<String> = holds.left().unwrap().into_iter().map(|h| h.id).collect();
        assert_eq!(
            left,
            ids[SWEEP_EVERY as usize - 3..],
            "only the unsettled stay"
        );
    }
}
