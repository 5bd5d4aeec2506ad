//! LLM receipts in the telemetry database: one row per call attempt, written by the same
//! batching writer thread as transitions and events (off the request path).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Transaction};
use rust_decimal::Decimal;

use crate::llm::cost::{Usage, UsageSource};

/// One attempt of one LLM call.
#[derive(Debug, Clone, PartialEq)]
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
    pub error: Option<String>,
}

/// Inserts one receipt inside the writer's transaction (a duplicate id is ignored).
pub(crate) fn insert(tx: &Transaction<'_>, r: &ReceiptRow) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO receipts (id, request_id, attempt, ts, job_id, agent, provider,
            model, input_tokens, output_tokens, cached_tokens, reasoning_tokens, usage_source,
            cost_usd, latency_ms, ttft_ms, stream, status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?;
    let source = match r.usage.source {
        UsageSource::Provider => "provider",
        UsageSource::Estimated => "estimated",
    };
    stmt.execute(params![
        r.id,
        r.request_id,
        r.attempt,
        super::db::ts_text(&r.ts),
        r.job_id,
        r.agent,
        r.provider,
        r.model,
        r.usage.input as i64,
        r.usage.output as i64,
        r.usage.cached as i64,
        r.usage.reasoning as i64,
        source,
        r.cost_usd.map(|c| c.to_string()),
        r.latency_ms,
        r.ttft_ms,
        r.stream,
        r.status,
        r.error,
    ])?;
    Ok(())
}

/// All receipts with `ts` at or after `since` (all when `None`), oldest first.
pub fn since(conn: &Connection, since: Option<DateTime<Utc>>) -> rusqlite::Result<Vec<ReceiptRow>> {
    let from = since.map(|t| super::db::ts_text(&t)).unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT id, request_id, attempt, ts, job_id, agent, provider, model, input_tokens,
                output_tokens, cached_tokens, reasoning_tokens, usage_source, cost_usd,
                latency_ms, ttft_ms, stream, status, error
         FROM receipts WHERE ts >= ?1 ORDER BY ts, id",
    )?;
    let rows = stmt.query_map([from], |r| {
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
                source: if source == "estimated" {
                    UsageSource::Estimated
                } else {
                    UsageSource::Provider
                },
            },
            cost_usd: cost.and_then(|c| c.parse().ok()),
            latency_ms: r.get(14)?,
            ttft_ms: r.get(15)?,
            stream: r.get(16)?,
            status: r.get(17)?,
            error: r.get(18)?,
        })
    })?;
    rows.collect()
}
