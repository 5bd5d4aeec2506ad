//! Running totals of the receipts, per UTC day, provider, model, agent, job and kind (how
//! the attempt ended: `ok`, `cut`, `interrupted`, or its error's kind). The day is the one
//! a receipt counts in ([`ReceiptRow::counts_in`]: the day its call was admitted), so a
//! call in flight at midnight is in the same day here as in the budgets that ran it.
//!
//! `pas costs`, `pas status` and the dashboard used to read every receipt to sum them: at a
//! million receipts that was seconds and half a gigabyte per look. The writer now adds each
//! new receipt to its total in the same transaction, so the totals can never disagree with
//! the receipts, and readers sum a few rows per day. Money stays exact: the sums are
//! `rust_decimal` in Rust, stored as decimal text, never SQL's floating `SUM`.

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use rust_decimal::Decimal;

use super::receipts::{count, ReceiptRow};

/// One total: the receipts of one day, provider, model, agent and job.
#[derive(Debug, Clone, PartialEq)]
pub struct Total {
    pub day: NaiveDate,
    pub provider: String,
    pub model: String,
    pub agent: Option<String>,
    pub job_id: Option<String>,
    /// [`ReceiptRow::kind`]: `ok`, `cut`, or the kind of error.
    pub kind: String,
    pub calls: u64,
    /// Receipts whose model had no price (their cost is unknown, not zero).
    pub unpriced: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The exact sum of the priced receipts' costs.
    pub cost_usd: Decimal,
}

/// A total's key: day, provider, model, agent ('' for none), job ('' for none), kind.
type Key = (String, String, String, String, String, String);

/// What some receipts add to one total.
#[derive(Debug, Default)]
struct Delta {
    calls: u64,
    unpriced: u64,
    input: u64,
    output: u64,
    cost: Decimal,
}

/// New receipts summed by total, to be added in one go: the writer's batch of a hundred
/// receipts of one agent's calls is one read and one write, not two per receipt.
#[derive(Debug, Default)]
pub(crate) struct Pending(std::collections::HashMap<Key, Delta>);

impl Pending {
    /// Counts one newly inserted receipt.
    pub(crate) fn add(&mut self, r: &ReceiptRow) {
        let key = (
            r.counts_in().to_string(),
            r.provider.clone(),
            r.model.clone(),
            r.agent.clone().unwrap_or_default(),
            r.job_id.clone().unwrap_or_default(),
            r.kind().to_string(),
        );
        let d = self.0.entry(key).or_default();
        d.calls += 1;
        d.unpriced += u64::from(r.cost_usd.is_none());
        d.input = d.input.saturating_add(r.usage.input);
        d.output = d.output.saturating_add(r.usage.output);
        d.cost += r.cost_usd.unwrap_or_default();
    }

    /// Adds everything counted to the totals (inside the writer's transaction).
    pub(crate) fn apply(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        for ((day, provider, model, agent, job, kind), d) in self.0 {
            let key = params![day, provider, model, agent, job, kind];
            let before: Option<String> = tx
                .prepare_cached(
                    "SELECT cost_usd FROM receipt_totals WHERE day = ?1 AND provider = ?2
                         AND model = ?3 AND agent = ?4 AND job_id = ?5 AND kind = ?6",
                )?
                .query_row(key, |row| row.get(0))
                .optional()?;
            let sum = before
                .and_then(|c| c.parse::<Decimal>().ok())
                .unwrap_or_default()
                + d.cost;
            // The token sums saturate at i64::MAX: SQLite turns an integer sum that
            // overflows into a float, which the readers cannot read back as a count.
            tx.prepare_cached(
                "INSERT INTO receipt_totals (day, provider, model, agent, job_id, kind, calls,
                     unpriced, input_tokens, output_tokens, cost_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (day, provider, model, agent, job_id, kind) DO UPDATE SET
                     calls = calls + excluded.calls, unpriced = unpriced + excluded.unpriced,
                     input_tokens = input_tokens + min(excluded.input_tokens,
                         9223372036854775807 - input_tokens),
                     output_tokens = output_tokens + min(excluded.output_tokens,
                         9223372036854775807 - output_tokens),
                     cost_usd = excluded.cost_usd",
            )?
            .execute(params![
                day,
                provider,
                model,
                agent,
                job,
                kind,
                count(d.calls),
                count(d.unpriced),
                count(d.input),
                count(d.output),
                sum.normalize().to_string(),
            ])?;
        }
        Ok(())
    }
}

/// Adds one newly inserted receipt to its total (inside a transaction).
#[cfg(test)]
pub(crate) fn add(tx: &Transaction<'_>, r: &ReceiptRow) -> rusqlite::Result<()> {
    let mut one = Pending::default();
    one.add(r);
    one.apply(tx)
}

/// Fills the totals from the receipts already recorded (the migration that adds them).
pub(crate) fn backfill(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let mut all = Pending::default();
    each_receipt(tx, |r| {
        all.add(&r);
        Ok(())
    })?;
    all.apply(tx)
}

/// Hands `f` every receipt (what a total needs of it), streamed.
fn each_receipt(
    conn: &Connection,
    mut f: impl FnMut(ReceiptRow) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT id, ts, provider, model, agent, job_id, input_tokens, output_tokens, cost_usd,
                status, error
         FROM receipts",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let ts: String = row.get(1)?;
        let Ok(ts) = chrono::DateTime::parse_from_rfc3339(&ts) else {
            continue; // not written by pas
        };
        let cost: Option<String> = row.get(8)?;
        let r = ReceiptRow {
            id: row.get(0)?,
            ts: ts.to_utc(),
            provider: row.get(2)?,
            model: row.get(3)?,
            agent: row.get(4)?,
            job_id: row.get(5)?,
            usage: crate::llm::cost::Usage {
                input: row.get::<_, i64>(6)? as u64,
                output: row.get::<_, i64>(7)? as u64,
                ..Default::default()
            },
            cost_usd: cost.and_then(|c| c.parse().ok()),
            status: row.get(9)?,
            error: row.get(10)?,
            ..ReceiptRow::default()
        };
        f(r)?;
    }
    Ok(())
}

/// The totals computed from the receipts themselves, for a database without them.
fn summed_from_receipts(
    conn: &Connection,
    from: Option<NaiveDate>,
) -> rusqlite::Result<Vec<Total>> {
    type Key = (
        NaiveDate,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
    );
    let mut sums: std::collections::BTreeMap<Key, Total> = Default::default();
    each_receipt(conn, |r| {
        let day = r.ts.date_naive();
        if from.is_some_and(|f| day < f) {
            return Ok(());
        }
        let kind = r.kind().to_string();
        let key = (
            day,
            r.provider.clone(),
            r.model.clone(),
            r.agent.clone(),
            r.job_id.clone(),
            kind.clone(),
        );
        let t = sums.entry(key).or_insert_with(|| Total {
            day,
            provider: r.provider,
            model: r.model,
            agent: r.agent,
            job_id: r.job_id,
            kind,
            calls: 0,
            unpriced: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Decimal::ZERO,
        });
        t.calls += 1;
        t.input_tokens = t.input_tokens.saturating_add(r.usage.input);
        t.output_tokens = t.output_tokens.saturating_add(r.usage.output);
        match r.cost_usd {
            Some(c) => t.cost_usd += c,
            None => t.unpriced += 1,
        }
        Ok(())
    })?;
    Ok(sums.into_values().collect())
}

/// Every total from `from` on (all when `None`), oldest day first. A database the daemon
/// has not migrated yet (read-only readers never migrate) is summed from its receipts.
pub fn since(conn: &Connection, from: Option<NaiveDate>) -> rusqlite::Result<Vec<Total>> {
    let kept: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'receipt_totals'",
        [],
        |r| r.get(0),
    )?;
    if !kept {
        return summed_from_receipts(conn, from);
    }
    let from = from.map(|d| d.to_string()).unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT day, provider, model, agent, job_id, calls, unpriced, input_tokens,
                output_tokens, cost_usd, kind
         FROM receipt_totals WHERE day >= ?1
         ORDER BY day, provider, model, agent, job_id, kind",
    )?;
    let none_if_blank = |s: String| (!s.is_empty()).then_some(s);
    let rows = stmt.query_map([from], |r| {
        let day: String = r.get(0)?;
        let cost: String = r.get(9)?;
        Ok(Total {
            day: day.parse().unwrap_or_default(),
            provider: r.get(1)?,
            model: r.get(2)?,
            agent: none_if_blank(r.get(3)?),
            job_id: none_if_blank(r.get(4)?),
            calls: r.get::<_, i64>(5)? as u64,
            unpriced: r.get::<_, i64>(6)? as u64,
            input_tokens: r.get::<_, i64>(7)? as u64,
            output_tokens: r.get::<_, i64>(8)? as u64,
            cost_usd: cost.parse().unwrap_or_default(),
            kind: r.get(10)?,
        })
    })?;
    rows.collect()
}
