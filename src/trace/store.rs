//! Spans in `telemetry/pas.db`: written by the telemetry writer thread (never on a request's
//! path), read by `pas traces`, `pas trace` and the dashboard.
//!
//! Message content is stored once per distinct text: an `llm` span's request is split into
//! its messages and the rest, each stored in `trace_contents` under its hash, and the span
//! keeps only the hashes. A system prompt repeated in every call of a swarm is one row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::span::{Kind, Source, Span, Status};
use crate::store::db::ts_text;
#[cfg(test)]
use crate::store::spans::{upsert, SpanRecord};

/// The hashes a reference written by `store::spans`'s `store_value` names.
fn hashes_of(r: &str) -> Vec<String> {
    let Ok(refs) = serde_json::from_str::<Value>(r) else {
        return Vec::new();
    };
    let mut out: Vec<String> = ["value", "rest"]
        .iter()
        .filter_map(|k| refs.get(*k).and_then(Value::as_str).map(str::to_string))
        .collect();
    out.extend(
        refs["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_string)),
    );
    out
}

/// Texts by hash, fetched in a few queries for a whole trace and parsed once each (a
/// system prompt shared by 10,000 spans is read and parsed once).
fn contents(conn: &Connection, refs: &[&str]) -> rusqlite::Result<HashMap<String, Value>> {
    let mut want: Vec<String> = refs.iter().flat_map(|r| hashes_of(r)).collect();
    want.sort();
    want.dedup();
    let mut out = HashMap::with_capacity(want.len());
    for chunk in want.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT hash, body FROM trace_contents WHERE hash IN ({marks})");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (h, body) = row?;
            if let Ok(v) = serde_json::from_str(&body) {
                out.insert(h, v);
            }
        }
    }
    Ok(out)
}

/// The value behind a reference written by `store::spans`'s `store_value`, from fetched `texts`.
fn load_value(texts: &HashMap<String, Value>, r: &str) -> Option<Value> {
    let refs = serde_json::from_str::<Value>(r).ok()?;
    let get = |h: &Value| h.as_str().and_then(|h| texts.get(h)).cloned();
    if let Some(h) = refs.get("value") {
        return get(h);
    }
    let mut out = refs.get("rest").and_then(get).unwrap_or_else(|| json!({}));
    let msgs: Vec<Value> = refs["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(get)
        .collect();
    if let Some(o) = out.as_object_mut() {
        o.insert("messages".into(), Value::Array(msgs));
    }
    Some(out)
}

const COLUMNS: &str = "trace_id, span_id, parent_id, name, kind, status, start, end, agent,
    job_id, source, provider, model, input_tokens, output_tokens, cost_usd, ttft_ms,
    receipt_id, attrs, input_ref, output_ref";

fn ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A stored row: the span, and its content references.
fn span_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Span, Option<String>, Option<String>)> {
    let kind: String = row.get(4)?;
    let status: String = row.get(5)?;
    let source: String = row.get(10)?;
    let cost: Option<String> = row.get(15)?;
    let attrs: String = row.get(18)?;
    let span = Span {
        trace_id: row.get(0)?,
        span_id: row.get(1)?,
        parent_id: row.get(2)?,
        name: row.get(3)?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Step),
        status: Status::parse(&status).unwrap_or(Status::Running),
        start: ts(row.get(6)?).unwrap_or_default(),
        end: ts(row.get(7)?),
        agent: row.get(8)?,
        job: row.get(9)?,
        source: Source::parse(&source),
        provider: row.get(11)?,
        model: row.get(12)?,
        input_tokens: row.get::<_, Option<i64>>(13)?.map(|t| t.max(0) as u64),
        output_tokens: row.get::<_, Option<i64>>(14)?.map(|t| t.max(0) as u64),
        cost_usd: cost.and_then(|c| c.parse::<Decimal>().ok()),
        ttft_ms: row.get(16)?,
        receipt_id: row.get(17)?,
        attrs: serde_json::from_str::<Map<String, Value>>(&attrs).unwrap_or_default(),
        input: None,
        output: None,
    };
    Ok((span, row.get(19)?, row.get(20)?))
}

/// Every span of trace `id`, by start; with their messages when `content`.
pub fn spans(conn: &Connection, id: &str, content: bool) -> rusqlite::Result<Vec<Span>> {
    let sql = format!("SELECT {COLUMNS} FROM spans WHERE trace_id = ?1 ORDER BY start, span_id");
    let rows: Vec<_> = conn
        .prepare_cached(&sql)?
        .query_map([id], span_of)?
        .collect::<rusqlite::Result<_>>()?;
    with_content(conn, rows, content)
}

/// The spans of `rows` with their messages filled in when `content`.
fn with_content(
    conn: &Connection,
    rows: Vec<(Span, Option<String>, Option<String>)>,
    content: bool,
) -> rusqlite::Result<Vec<Span>> {
    let texts = if content {
        let refs: Vec<&str> = rows
            .iter()
            .flat_map(|(_, i, o)| [i.as_deref(), o.as_deref()])
            .flatten()
            .collect();
        contents(conn, &refs)?
    } else {
        HashMap::new()
    };
    Ok(rows
        .into_iter()
        .map(|(mut s, i, o)| {
            if content {
                s.input = i.and_then(|r| load_value(&texts, &r));
                s.output = o.and_then(|r| load_value(&texts, &r));
            }
            s
        })
        .collect())
}

/// One span of trace `trace` with its messages, if stored.
pub fn span(conn: &Connection, trace: &str, span: &str) -> rusqlite::Result<Option<Span>> {
    let sql = format!("SELECT {COLUMNS} FROM spans WHERE trace_id = ?1 AND span_id = ?2");
    let Some(row) = conn
        .prepare_cached(&sql)?
        .query_row([trace, span], span_of)
        .optional()?
    else {
        return Ok(None);
    };
    Ok(with_content(conn, vec![row], true)?.pop())
}

/// Which traces `pas traces` lists.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub agent: Option<String>,
    pub job: Option<String>,
    /// Most traces listed, newest first.
    pub limit: usize,
}

/// One line of `pas traces`.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Summary {
    pub trace_id: String,
    /// The root span's name (the card's title for a job's trace).
    pub root: String,
    pub agent: Option<String>,
    pub job: Option<String>,
    pub spans: u64,
    pub start: DateTime<Utc>,
    pub duration_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Exact, as text; `None` when no span of the trace has a known cost.
    pub cost_usd: Option<String>,
    pub status: &'static str,
}

/// The traces that match `f`, newest first.
pub fn list(conn: &Connection, f: &Filter) -> rusqlite::Result<Vec<Summary>> {
    let limit = if f.limit == 0 { 100 } else { f.limit } as i64;
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT trace_id FROM spans
             WHERE (?1 IS NULL OR trace_id IN (SELECT trace_id FROM spans WHERE agent = ?1))
               AND (?2 IS NULL OR trace_id IN (SELECT trace_id FROM spans WHERE job_id = ?2))
             GROUP BY trace_id ORDER BY MAX(start) DESC LIMIT ?3",
        )?
        .query_map(params![f.agent, f.job, limit], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let all = spans(conn, &id, false)?;
        if let Some(s) = summarize(&id, &all) {
            out.push(s);
        }
    }
    Ok(out)
}

/// A trace's line: its root, its span count, its time and its totals (exact).
pub fn summarize(id: &str, all: &[Span]) -> Option<Summary> {
    let ids: HashMap<&str, ()> = all.iter().map(|s| (s.span_id.as_str(), ())).collect();
    let root = all
        .iter()
        .find(|s| s.kind == Kind::Job)
        .or_else(|| {
            all.iter()
                .find(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains_key(p)))
        })
        .or(all.first())?;
    let start = all.iter().map(|s| s.start).min()?;
    let end = all.iter().filter_map(|s| s.end).max();
    let running = all.iter().any(|s| s.status == Status::Running);
    let costs: Vec<Decimal> = all.iter().filter_map(|s| s.cost_usd).collect();
    Some(Summary {
        trace_id: id.to_string(),
        root: root.name.clone(),
        agent: root
            .agent
            .clone()
            .or_else(|| all.iter().find_map(|s| s.agent.clone())),
        job: root
            .job
            .clone()
            .or_else(|| all.iter().find_map(|s| s.job.clone())),
        spans: all.len() as u64,
        start,
        duration_ms: end
            .filter(|_| !running)
            .map(|e| (e - start).num_microseconds().unwrap_or(0) as f64 / 1000.0),
        input_tokens: all.iter().filter_map(|s| s.input_tokens).sum(),
        output_tokens: all.iter().filter_map(|s| s.output_tokens).sum(),
        cost_usd: (!costs.is_empty()).then(|| {
            costs
                .iter()
                .copied()
                .sum::<Decimal>()
                .normalize()
                .to_string()
        }),
        status: if all.iter().any(|s| s.status == Status::Error) {
            "error"
        } else if running {
            "running"
        } else {
            "ok"
        },
    })
}

/// The trace and root span of job `id`'s card created at `created` (its root span
/// starts then, to the millisecond), if stored.
pub fn root_of_job(
    conn: &Connection,
    id: &str,
    created: DateTime<Utc>,
) -> rusqlite::Result<Option<(String, String)>> {
    conn.prepare_cached(
        "SELECT trace_id, span_id FROM spans WHERE job_id = ?1 AND kind = 'job' AND start = ?2 LIMIT 1",
    )?
    .query_row(params![id, ts_text(&created)], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

/// The first span of trace `trace` without a parent, if any.
pub fn root_span(conn: &Connection, trace: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT span_id FROM spans WHERE trace_id = ?1 AND parent_id IS NULL ORDER BY start LIMIT 1",
    )?
    .query_row([trace], |r| r.get(0))
    .optional()
}

/// The trace of job `id`, if its root span is stored.
pub fn trace_of_job(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT trace_id FROM spans WHERE job_id = ?1 AND kind = 'job' LIMIT 1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::parse_line;

    const T: &str = "0af7651916cd43dd8448eb211c80319c";

    fn put(conn: &mut Connection, r: SpanRecord) {
        let tx = conn.transaction().unwrap();
        upsert(&tx, &r).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_repeated_system_prompt_is_stored_once_and_read_back_whole() {
        let d = tempfile::tempdir().unwrap();
        let mut conn = crate::store::db::open(&d.path().join("pas.db")).unwrap();
        for i in 0..50 {
            let mut s = Span::new(
                T,
                &format!("{:016x}", i + 1),
                "chat",
                Kind::Llm,
                Source::Pas,
            );
            s.input = Some(json!({"model": "m", "messages": [
                {"role": "system", "content": "You are a careful reviewer."},
                {"role": "user", "content": format!("question {i}")}]}));
            s.cost_usd = Some("0.0001".parse().unwrap());
            put(
                &mut conn,
                SpanRecord {
                    span: s,
                    partial: false,
                },
            );
        }
        let texts: i64 = conn
            .query_row("SELECT COUNT(*) FROM trace_contents", [], |r| r.get(0))
            .unwrap();
        // One system prompt, 50 questions, one shared rest ({"model": "m"}).
        assert_eq!(texts, 52);
        let back = spans(&conn, T, true).unwrap();
        assert_eq!(back.len(), 50);
        assert_eq!(
            back[0].input.as_ref().unwrap()["messages"][0]["content"],
            "You are a careful reviewer."
        );
        assert_eq!(back[0].input.as_ref().unwrap()["model"], "m");
        let sum = summarize(T, &back).unwrap();
        assert_eq!(sum.cost_usd.as_deref(), Some("0.005"));
    }

    #[test]
    fn a_later_line_updates_only_what_it_names() {
        let d = tempfile::tempdir().unwrap();
        let mut conn = crate::store::db::open(&d.path().join("pas.db")).unwrap();
        let first = parse_line(
            r#"{"span_id":"b7ad6b7169203331","name":"build","kind":"tool","start":"2026-01-01T00:00:00Z","attrs":{"a":1}}"#,
            T,
        )
        .unwrap();
        put(
            &mut conn,
            SpanRecord {
                span: first.span,
                partial: !first.complete,
            },
        );
        let later = parse_line(
            r#"{"span_id":"b7ad6b7169203331","end":"2026-01-01T00:00:02Z","status":"error","attrs":{"b":2}}"#,
            T,
        )
        .unwrap();
        put(
            &mut conn,
            SpanRecord {
                span: later.span,
                partial: !later.complete,
            },
        );
        let s = span(&conn, T, "b7ad6b7169203331").unwrap().unwrap();
        assert_eq!(
            (s.name.as_str(), s.kind, s.status),
            ("build", Kind::Tool, Status::Error)
        );
        assert_eq!(s.duration_ms(), Some(2000.0));
        assert_eq!(
            (s.attrs["a"].clone(), s.attrs["b"].clone()),
            (json!(1), json!(2))
        );
    }
}
