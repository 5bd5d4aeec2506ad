//! The telemetry writer's half of spans in `telemetry/pas.db` (the readers are in
//! `trace::store`): a span inserted or merged into the one stored under its ids.
//!
//! Message content is stored once per distinct text: an `llm` span's request is split into
//! its messages and the rest, each stored in `trace_contents` under its hash, and the span
//! keeps only the hashes. A system prompt repeated in every call of a swarm is one row.

use rusqlite::{params, Transaction};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::db::ts_text;
use crate::span::Span;

/// A span for the writer. `partial`: the record names only some fields (a later JSONL
/// line), so a stored span keeps its kind, name and start unless this one says them.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub span: Span,
    pub partial: bool,
}

/// Inserts `r`, or updates the span stored under the same ids: the fields it sets win,
/// the ones it leaves empty keep what was stored, attributes are merged.
pub fn upsert(tx: &Transaction<'_>, r: &SpanRecord) -> rusqlite::Result<()> {
    let s = &r.span;
    let input = s.input.as_ref().map(|v| store_value(tx, v)).transpose()?;
    let output = s.output.as_ref().map(|v| store_value(tx, v)).transpose()?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO spans (trace_id, span_id, parent_id, name, kind, status, start, end, agent,
             job_id, source, provider, model, input_tokens, output_tokens, cost_usd, ttft_ms,
             receipt_id, attrs, input_ref, output_ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21)
         ON CONFLICT (trace_id, span_id) DO UPDATE SET
             parent_id = COALESCE(excluded.parent_id, parent_id),
             name = CASE WHEN ?22 AND excluded.name = '' THEN name ELSE excluded.name END,
             kind = CASE WHEN ?22 THEN kind ELSE excluded.kind END,
             status = excluded.status,
             start = CASE WHEN ?22 THEN MIN(start, excluded.start) ELSE excluded.start END,
             end = COALESCE(excluded.end, end),
             agent = COALESCE(excluded.agent, agent),
             job_id = COALESCE(excluded.job_id, job_id),
             provider = COALESCE(excluded.provider, provider),
             model = COALESCE(excluded.model, model),
             input_tokens = COALESCE(excluded.input_tokens, input_tokens),
             output_tokens = COALESCE(excluded.output_tokens, output_tokens),
             cost_usd = COALESCE(excluded.cost_usd, cost_usd),
             ttft_ms = COALESCE(excluded.ttft_ms, ttft_ms),
             receipt_id = COALESCE(excluded.receipt_id, receipt_id),
             attrs = json_patch(attrs, excluded.attrs),
             input_ref = COALESCE(excluded.input_ref, input_ref),
             output_ref = COALESCE(excluded.output_ref, output_ref)",
    )?;
    stmt.execute(params![
        s.trace_id,
        s.span_id,
        s.parent_id,
        s.name,
        s.kind.as_str(),
        s.status.as_str(),
        ts_text(&s.start),
        s.end.as_ref().map(ts_text),
        s.agent,
        s.job,
        s.source.as_str(),
        s.provider,
        s.model,
        s.input_tokens.map(|t| t.min(i64::MAX as u64) as i64),
        s.output_tokens.map(|t| t.min(i64::MAX as u64) as i64),
        s.cost_usd.map(|c| c.normalize().to_string()),
        s.ttft_ms,
        s.receipt_id,
        Value::Object(s.attrs.clone()).to_string(),
        input,
        output,
        r.partial,
    ])?;
    Ok(())
}

/// The hash a text is stored under: 128 bits of SHA-256, as hex.
pub fn content_hash(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn put_text(tx: &Transaction<'_>, text: &str) -> rusqlite::Result<String> {
    let h = content_hash(text);
    tx.prepare_cached("INSERT OR IGNORE INTO trace_contents (hash, body) VALUES (?1, ?2)")?
        .execute(params![h, text])?;
    Ok(h)
}

/// Stores `v` and returns its reference: a chat request's messages one by one
/// (`{"messages": [h, ...], "rest": h}`), anything else whole (`{"value": h}`).
fn store_value(tx: &Transaction<'_>, v: &Value) -> rusqlite::Result<String> {
    if let Some(Value::Array(msgs)) = v.get("messages") {
        let mut hashes = Vec::with_capacity(msgs.len());
        for m in msgs {
            hashes.push(put_text(tx, &m.to_string())?);
        }
        let mut rest = v.as_object().cloned().unwrap_or_default();
        rest.remove("messages");
        let rest = put_text(tx, &Value::Object(rest).to_string())?;
        return Ok(json!({"messages": hashes, "rest": rest}).to_string());
    }
    Ok(json!({"value": put_text(tx, &v.to_string())?}).to_string())
}
