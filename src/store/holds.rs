//! Durable budget holds: every paid call in flight has a row in `holds`, written before
//! its upstream is called, deleted in the transaction that inserts its receipt
//! ([`settled`], called by the writer). A row left at start-up is a call pas was killed
//! during: the provider may have billed it, so [`recover`] turns it into an `interrupted`
//! receipt at its reserved worst case, counted in the totals and so in the budgets.
//!
//! The request path writes its row on its own connection ([`Holds`]), not through the
//! batching writer: the row must be committed before the upstream is called, and waiting
//! for a batch would add the writer's latency to every call. In WAL mode with
//! `synchronous=NORMAL` that commit is an append to the WAL without an fsync: it survives
//! the process being killed (the point), not a power cut (which loses the last commits of
//! the receipts too).

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use rust_decimal::Decimal;

use super::db::{self, DbError};
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

/// How long writing a hold waits for another connection's lock.
const HOLD_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The status of a receipt recovered from a hold.
pub const INTERRUPTED: &str = "interrupted";

/// The request path's connection to the holds table.
pub struct Holds {
    conn: Mutex<Connection>,
}

impl Holds {
    /// Opens (and migrates) the database at `path` for holds; until
    /// [`serving`](Self::serving), it waits out other connections' locks as long as the
    /// writer does (start-up recovery should wait, not fail the start).
    pub fn open(path: &Path) -> Result<Holds, DbError> {
        Ok(Holds {
            conn: Mutex::new(db::open(path)?),
        })
    }

    /// Shortens the wait for other connections' locks to [`HOLD_WAIT`], for the request
    /// path: the writer's transactions take milliseconds, and waiting longer means another
    /// process holds the database (a backup, a script's long transaction); a paid call
    /// should not stall behind it. The write fails, is logged, and the call goes on.
    pub fn serving(self) -> rusqlite::Result<Holds> {
        self.lock().busy_timeout(HOLD_WAIT)?;
        Ok(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the hold of a call about to be sent (committed when this returns).
    pub fn put(&self, h: &HoldRow) -> rusqlite::Result<()> {
        let conn = self.lock();
        conn.prepare_cached(
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
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM holds WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Turns every hold left by a run that did not finish its calls into an `interrupted`
    /// receipt stamped `now` (counting in its hold's day), in one transaction; returns the
    /// receipts written.
    pub fn recover(&self, now: DateTime<Utc>) -> rusqlite::Result<Vec<ReceiptRow>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let left = all(&tx)?;
        let mut totals = super::totals::Pending::default();
        let mut out = Vec::new();
        for h in left {
            let r = interrupted(&h, now);
            if receipts::insert_only(&tx, &r)? {
                totals.add(&r);
                out.push(r);
            }
        }
        totals.apply(&tx)?;
        tx.execute("DELETE FROM holds", [])?;
        tx.commit()?;
        Ok(out)
    }
}

/// Deletes the hold settled by receipt `id` (inside the writer's transaction).
pub(crate) fn settled(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM holds WHERE id = ?1")?
        .execute([id])?;
    Ok(())
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_left_behind_becomes_an_interrupted_receipt_and_a_settled_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pas.db");
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
        holds.put(&hold("a")).unwrap();
        holds.put(&hold("b")).unwrap();
        holds.put(&hold("c")).unwrap();
        holds.forget("c").unwrap();
        // "a" settles: its receipt and the end of its hold are one transaction.
        let mut conn = db::open(&path).unwrap();
        let settled_row = ReceiptRow {
            id: "a".into(),
            ts: now,
            provider: "p".into(),
            model: "m".into(),
            status: "ok".into(),
            cost_usd: Some("0.001".parse().unwrap()),
            ..ReceiptRow::default()
        };
        db::write_batch(&mut conn, &[db::Record::Receipt(Box::new(settled_row))]).unwrap();
        let got = holds.recover(now).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].id, "b");
        assert_eq!(got[0].status, INTERRUPTED);
        assert_eq!(got[0].cost_usd, Some("0.0123".parse().unwrap()));
        assert!(all(&conn).unwrap().is_empty());
        let totals = super::super::totals::since(&conn, None).unwrap();
        let t = totals.iter().find(|t| t.kind == INTERRUPTED).unwrap();
        assert_eq!((t.day, t.cost_usd), (day, "0.0123".parse().unwrap()));
        // A second start finds nothing left.
        assert!(holds.recover(now).unwrap().is_empty());
    }
}
