//! LLM receipts in the telemetry database: one row per call attempt, written by the same
//! batching writer thread as transitions and events (off the request path).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Transaction};
use rust_decimal::Decimal;

use crate::llm::cost::{Usage, UsageSource};

/// One attempt of one LLM call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiptRow {
    pub id: String,
    pub request_id: String,
    pub attempt: u32,
    pub ts: DateTime<Utc>,
    pub job_id: Option<String>,
    pub agent: Option<String>,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    /// `None`: the model has no price (unknown, not free).
    pub cost_usd: Option<Decimal>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub stream: bool,
    /// `ok`, `error` or `cut`.
    pub status: String,
    /// Why, for `error`, `cut` and `interrupted`. An error's text starts with its kind
    /// and a colon (`timeout: ...`, `http_429: ...`; see [`ReceiptRow::kind`]).
    pub error: Option<String>,
    /// The UTC day the call counts in for budgets and totals: the day its hold was
    /// admitted, which for a call in flight at midnight is not the day of `ts`. `None`:
    /// the day of `ts`. (Written, and counted in the totals; readers of single receipts
    /// go by `ts`.)
    pub day: Option<chrono::NaiveDate>,
    /// The input tokens the call's reservation assumed (its bound from the request's
    /// bytes plus the surplus learnt for its model): what billed input is compared with.
    pub input_estimate: Option<u64>,
    /// The recorded call (`TRACE_ID/SPAN_ID`) this one replays (`pas replay`).
    pub replay_of: Option<String>,
}

impl ReceiptRow {
    /// The UTC day the receipt counts in (see [`ReceiptRow::day`]).
    pub fn counts_in(&self) -> chrono::NaiveDate {
        self.day.unwrap_or_else(|| self.ts.date_naive())
    }

    /// How the attempt ended, finer than `status`: `ok`, `cut`, or for an error its kind
    /// (`connect_error`, `timeout`, `first_token_timeout`, `http_<code>`, `malformed`),
    /// which leads its error text. In SQL: `CASE status WHEN 'error' THEN
    /// substr(error, 1, instr(error, ':') - 1) ELSE status END`.
    pub fn kind(&self) -> &str {
        if self.status != "error" {
            return &self.status;
        }
        let lead = self
            .error
            .as_deref()
            .and_then(|e| e.split_once(": "))
            .map(|(k, _)| k)
            .filter(|k| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        lead.unwrap_or("error")
    }
}

/// Inserts one receipt inside a transaction (a duplicate id is ignored) and adds it to its
/// total: the writer's way, one receipt at a time (tests).
#[cfg(test)]
pub(crate) fn insert(tx: &Transaction<'_>, r: &ReceiptRow) -> rusqlite::Result<()> {
    if insert_only(tx, r)? {
        super::totals::add(tx, r)?;
    }
    Ok(())
}

/// Inserts one receipt, leaving its total to the caller; whether it was new (a replayed
/// duplicate is not, and must not be counted again).
pub(crate) fn insert_only(tx: &Transaction<'_>, r: &ReceiptRow) -> rusqlite::Result<bool> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO receipts (id, request_id, attempt, ts, job_id, agent, provider,
            model, input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source,
            cost_usd, latency_ms, ttft_ms, stream, status, error, cache_write_tokens,
            cache_write_1h_tokens, day, input_estimate, replay_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24)",
    )?;
    let source = match r.usage.source {
        UsageSource::Provider => "provider",
        UsageSource::Estimated => "estimated",
        UsageSource::Transcript => "transcript",
    };
    let inserted = stmt.execute(params![
        r.id,
        r.request_id,
        r.attempt,
        super::db::ts_text(&r.ts),
        r.job_id,
        r.agent,
        r.provider,
        r.model,
        count(r.usage.input),
        count(r.usage.output),
        count(r.usage.cached),
        count(r.usage.reasoning),
        source,
        r.cost_usd.map(|c| c.to_string()),
        r.latency_ms,
        r.ttft_ms,
        r.stream,
        r.status,
        r.error,
        count(r.usage.cache_write),
        count(r.usage.cache_write_1h),
        r.day.map(|d| d.to_string()),
        r.input_estimate.map(count),
        r.replay_of,
    ])?;
    Ok(inserted == 1)
}

/// A token count as SQLite's integer: clamped, since `as` would turn a count above
/// `i64::MAX` (an upstream's nonsense, passed on saturated) into a negative one.
pub(super) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns [`read_row`] reads, in its order.
const COLUMNS: &str = "id, request_id, attempt, ts, job_id, agent, provider, model, input_tokens,
    output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_usd, latency_ms,
    ttft_ms, stream, status, error, cache_write_tokens, cache_write_1h_tokens";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptRow> {
    let ts: String = r.get(3)?;
    let cost: Option<String> = r.get(13)?;
    let source: String = r.get(12)?;
    Ok(ReceiptRow {
        id: r.get(0)?,
        request_id: r.get(1)?,
        attempt: r.get(2)?,
        ts: DateTime::parse_from_rfc3339(&ts)
            .map(|t| t.to_utc())
            .unwrap_or_default(),
        job_id: r.get(4)?,
        agent: r.get(5)?,
        provider: r.get(6)?,
        model: r.get(7)?,
        usage: Usage {
            input: r.get::<_, i64>(8)? as u64,
            output: r.get::<_, i64>(9)? as u64,
            cached: r.get::<_, i64>(10)? as u64,
            reasoning: r.get::<_, i64>(11)? as u64,
            cache_write: r.get::<_, i64>(19)? as u64,
            cache_write_1h: r.get::<_, i64>(20)? as u64,
            source: match source.as_str() {
                "estimated" => UsageSource::Estimated,
                "transcript" => UsageSource::Transcript,
                _ => UsageSource::Provider,
            },
        },
        cost_usd: cost.and_then(|c| c.parse().ok()),
        latency_ms: r.get(14)?,
        ttft_ms: r.get(15)?,
        stream: r.get(16)?,
        status: r.get(17)?,
        error: r.get(18)?,
        // Not read back: a reader may open a database older than these columns.
        day: None,
        input_estimate: None,
        replay_of: None,
    })
}

/// All receipts with `ts` at or after `since` (all when `None`), oldest first.
pub fn since(conn: &Connection, since: Option<DateTime<Utc>>) -> rusqlite::Result<Vec<ReceiptRow>> {
    let from = since.map(|t| super::db::ts_text(&t)).unwrap_or_default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM receipts WHERE ts >= ?1 ORDER BY ts, id"
    ))?;
    let rows = stmt.query_map([from], read_row)?;
    rows.collect()
}

/// The last `limit` receipts (of `job` when given), oldest first: what a page shows, read
/// through the indexes rather than by loading every receipt.
pub fn latest(
    conn: &Connection,
    job: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<ReceiptRow>> {
    // Two statements, so each uses its index (`receipts_job`, `receipts_ts`).
    let mut rows = match job {
        Some(job) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM receipts WHERE job_id = ?1
                 ORDER BY ts DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![job, limit], read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM receipts ORDER BY ts DESC, id DESC LIMIT ?1"
            ))?
            .query_map(params![limit], read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    rows.reverse();
    Ok(rows)
}

/// How many recent answered calls seed the latency averages: with the average's weight
/// of 0.3 per sample, samples beyond the last few dozen of a model no longer count.
pub const LATENCY_MEMORY: u32 = 2_000;

/// `(provider, model, ms)` of the last `limit` answered calls, oldest first: the time to
/// the first token of a stream, else the whole call (what routing's average is fed).
pub fn recent_latencies(
    conn: &Connection,
    limit: u32,
) -> rusqlite::Result<Vec<(String, String, f64)>> {
    let mut stmt = conn.prepare(
        "SELECT provider, model, CASE WHEN stream AND ttft_ms IS NOT NULL
                                      THEN ttft_ms ELSE latency_ms END
         FROM receipts WHERE status = 'ok' ORDER BY ts DESC, id DESC LIMIT ?1",
    )?;
    let mut rows = stmt
        .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// [`recent_latencies`] of the database at `path` (none when there is no database yet):
/// what the gateway seeds `fastest` with at start, and `pas route` shows.
pub fn past_latencies(path: &std::path::Path) -> anyhow::Result<Vec<(String, String, f64)>> {
    match super::db::open_read_only(path)? {
        Some(conn) => Ok(recent_latencies(&conn, LATENCY_MEMORY)?),
        None => Ok(Vec::new()),
    }
}

/// `(provider, model, surplus)` of the last `limit` answered calls whose input the
/// provider reported, oldest first: billed input less the request's bound, never below 0
/// (see `gateway::surplus`). Receipts from before the bound was recorded say nothing.
pub fn recent_surpluses(
    conn: &Connection,
    limit: u32,
) -> rusqlite::Result<Vec<(String, String, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT provider, model, max(input_tokens - input_estimate, 0)
         FROM receipts WHERE status = 'ok' AND usage_source = 'provider'
             AND input_estimate IS NOT NULL
         ORDER BY ts DESC, id DESC LIMIT ?1",
    )?;
    let mut rows = stmt
        .query_map([limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// [`recent_surpluses`] of the database at `path` (none without a database): what the
/// gateway's surplus starts from (the daemon has migrated the database by then).
pub fn past_surpluses(path: &std::path::Path) -> anyhow::Result<Vec<(String, String, u64)>> {
    match super::db::open_read_only(path)? {
        Some(conn) => Ok(recent_surpluses(&conn, LATENCY_MEMORY)?),
        None => Ok(Vec::new()),
    }
}

/// What a budget needs of one past receipt.
#[derive(Debug, Clone)]
pub struct Spent {
    pub ts: DateTime<Utc>,
    pub job_id: Option<String>,
    pub agent: Option<String>,
    pub cost_usd: Decimal,
}

/// Hands `add` what the budgets count: the spend of each day from `from` on (this
/// month's) and every job's (a job's budget has no period), read from the receipt totals
/// (a busy month holds millions of receipts; its totals a few rows a day). Each `Spent`
/// stands for one total and is stamped with the start of its day: budgets compare days.
pub fn for_budgets(
    conn: &Connection,
    from: DateTime<Utc>,
    mut add: impl FnMut(Spent),
) -> rusqlite::Result<()> {
    let first_day = from.date_naive();
    for t in super::totals::since(conn, None)? {
        if t.cost_usd.is_zero() || (t.day < first_day && t.job_id.is_none()) {
            continue; // nothing to count, or a past month with no job
        }
        add(Spent {
            ts: t.day.and_time(chrono::NaiveTime::MIN).and_utc(),
            job_id: t.job_id,
            agent: t.agent,
            cost_usd: t.cost_usd,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ts: &str, job: Option<&str>, cost: Option<&str>) -> ReceiptRow {
        ReceiptRow {
            id: id.into(),
            request_id: id.into(),
            attempt: 1,
            ts: DateTime::parse_from_rfc3339(ts).unwrap().to_utc(),
            job_id: job.map(str::to_string),
            agent: Some("a".into()),
            provider: "p".into(),
            model: "m".into(),
            usage: Usage::default(),
            cost_usd: cost.map(|c| c.parse().unwrap()),
            latency_ms: 1.0,
            ttft_ms: None,
            stream: false,
            status: "ok".into(),
            error: None,
            day: None,
            input_estimate: None,
            replay_of: None,
        }
    }

    /// Regression: counts were bound `as i64`, so an upstream's count above `i64::MAX`
    /// was stored negative; and two such receipts overflowed their total into a float,
    /// which no reader could read back as a count.
    #[test]
    fn counts_beyond_sqlite_integers_are_stored_clamped_and_totals_saturate() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::db::open(&dir.path().join("t.db")).unwrap();
        let tx = conn.transaction().unwrap();
        let huge = Usage {
            input: u64::MAX,
            output: u64::MAX - 1,
            cached: u64::MAX,
            cache_write: u64::MAX,
            cache_write_1h: u64::MAX,
            reasoning: u64::MAX,
            ..Usage::default()
        };
        for id in ["r1", "r2"] {
            let mut r = row(id, "2026-11-01T10:00:00.000Z", None, Some("1"));
            r.usage = huge;
            insert(&tx, &r).unwrap();
        }
        tx.commit().unwrap();
        let big = i64::MAX as u64;
        for r in since(&conn, None).unwrap() {
            let u = r.usage;
            let all = [u.input, u.output, u.cached, u.cache_write, u.cache_write_1h];
            assert_eq!(all, [big; 5], "{u:?}");
            assert_eq!(u.reasoning, big);
        }
        let totals = super::super::totals::since(&conn, None).unwrap();
        assert_eq!(totals.len(), 1);
        assert_eq!(
            (totals[0].input_tokens, totals[0].output_tokens),
            (big, big)
        );
        assert_eq!(totals[0].calls, 2);
    }

    #[test]
    fn totals_follow_every_new_receipt_exactly_and_a_migration_fills_them() {
        use super::super::db::{write_batch, Record};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = super::super::db::open(&path).unwrap();
        let mut rows = Vec::new();
        for i in 0..30 {
            let day = if i < 20 { "2026-11-01" } else { "2026-11-02" };
            let job = if i % 3 == 0 { Some("J") } else { None };
            let cost = if i == 7 { None } else { Some("0.15") };
            let r = row(
                &format!("r{i}"),
                &format!("{day}T10:00:{i:02}.000Z"),
                job,
                cost,
            );
            rows.push(Record::Receipt(Box::new(r)));
        }
        // The writer's batches, and a replayed receipt (start-up resends) not counted twice.
        write_batch(&mut conn, &rows[..12]).unwrap();
        write_batch(&mut conn, &rows[11..]).unwrap();
        let Record::Receipt(first) = &rows[0] else {
            unreachable!()
        };
        let tx = conn.transaction().unwrap();
        insert(&tx, first).unwrap();
        tx.commit().unwrap();
        let totals = super::super::totals::since(&conn, None).unwrap();
        let key = |t: &super::super::totals::Total| (t.day.to_string(), t.job_id.clone());
        let got: Vec<_> = totals
            .iter()
            .map(|t| (key(t), t.calls, t.unpriced, t.cost_usd.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (("2026-11-01".into(), None), 13, 1, "1.8".into()),
                (("2026-11-01".into(), Some("J".into())), 7, 0, "1.05".into()),
                (("2026-11-02".into(), None), 7, 0, "1.05".into()),
                (("2026-11-02".into(), Some("J".into())), 3, 0, "0.45".into()),
            ]
        );
        let later = "2026-11-02".parse().unwrap();
        assert_eq!(
            super::super::totals::since(&conn, Some(later))
                .unwrap()
                .len(),
            2
        );
        // A database from before the totals gets them filled, to the same numbers.
        conn.execute_batch(
            "DROP TABLE receipt_totals; ALTER TABLE receipts DROP COLUMN day;
             ALTER TABLE receipts DROP COLUMN input_estimate;
             ALTER TABLE receipts DROP COLUMN replay_of;
             DELETE FROM schema_version; INSERT INTO schema_version VALUES (4);",
        )
        .unwrap();
        // Read-only readers of such a database (they never migrate) sum the receipts.
        assert_eq!(super::super::totals::since(&conn, None).unwrap(), totals);
        drop(conn);
        let conn = super::super::db::open(&path).unwrap();
        assert_eq!(super::super::totals::since(&conn, None).unwrap(), totals);
        let last = latest(&conn, Some("J"), 2).unwrap();
        let ids: Vec<&str> = last.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r24", "r27"]);
        assert_eq!(latest(&conn, None, 1).unwrap()[0].id, "r29");
    }

    #[test]
    fn cache_writes_are_kept_and_a_version_3_database_gains_them_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // A database as pas wrote it before migration 4, with one receipt.
        let old = Connection::open(&path).unwrap();
        for (version, sql) in &super::super::db::MIGRATIONS[..3] {
            old.execute_batch(sql).unwrap();
            assert!(*version <= 3);
        }
        old.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (3);
             INSERT INTO receipts (id, request_id, attempt, ts, provider, model, input_tokens,
                usage_source, latency_ms, stream, status)
             VALUES ('old', 'old', 1, '2026-11-01T00:00:00.000Z', 'p', 'm', 9, 'provider', 1,
                0, 'ok');",
        )
        .unwrap();
        drop(old);
        let mut conn = super::super::db::open(&path).unwrap();
        let mut new = row("new", "2026-11-02T00:00:00.000Z", None, Some("0.1"));
        new.usage = Usage {
            input: 100,
            cached: 10,
            cache_write: 60,
            cache_write_1h: 20,
            ..Usage::default()
        };
        let tx = conn.transaction().unwrap();
        insert(&tx, &new).unwrap();
        tx.commit().unwrap();
        let rows = since(&conn, None).unwrap();
        assert_eq!(rows[0].id, "old");
        assert_eq!((rows[0].usage.input, rows[0].usage.cache_write), (9, 0));
        assert_eq!(rows[1], new);
    }

    #[test]
    fn the_kind_of_an_error_leads_its_text() {
        let mut r = row("r", "2026-11-01T00:00:00.000Z", None, None);
        assert_eq!(r.kind(), "ok");
        r.status = "error".into();
        r.error = Some("http_429: HTTP 429: slow down".into());
        assert_eq!(r.kind(), "http_429");
        r.error = Some("first_token_timeout: no first token after 1s".into());
        assert_eq!(r.kind(), "first_token_timeout");
        // Rows written before kinds were recorded.
        r.error = Some("connection failed: tcp connect error: refused".into());
        assert_eq!(r.kind(), "error");
        r.error = None;
        assert_eq!(r.kind(), "error");
        r.status = "cut".into();
        assert_eq!(r.kind(), "cut");
    }

    #[test]
    fn budgets_see_this_months_receipts_and_every_jobs_never_an_unpriced_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::db::open(&dir.path().join("t.db")).unwrap();
        let tx = conn.transaction().unwrap();
        for r in [
            row("old", "2026-10-31T23:59:59.999Z", None, Some("5")),
            row(
                "old-job",
                "2026-10-02T00:00:00.000Z",
                Some("J"),
                Some("0.25"),
            ),
            row("now", "2026-11-01T00:00:00.000Z", None, Some("0.10")),
            row("unpriced", "2026-11-02T00:00:00.000Z", None, None),
        ] {
            insert(&tx, &r).unwrap();
        }
        tx.commit().unwrap();
        let from = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut seen = Vec::new();
        for_budgets(&conn, from, |s| {
            seen.push((s.job_id, s.cost_usd.to_string()))
        })
        .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                (None, "0.1".to_string()),
                (Some("J".to_string()), "0.25".to_string())
            ]
        );
    }
}
