//! Trace commands: `pas traces` (the list), `pas trace ID` (one trace as a tree with
//! subtree totals), `pas span` (one span line appended from a shell).
//!
//! Reading commands open `telemetry/pas.db` read-only, so they work while the daemon
//! writes and without it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};
use chrono::{SecondsFormat, Utc};
use clap::Args;
use serde_json::{json, Map, Value};

use super::{Format, Out};
use crate::trace::{store, tree};
use crate::workspace::Workspace;

/// `pas traces`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only traces with a span by this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only the traces of this job.
    #[arg(long)]
    pub job: Option<String>,
    /// At most this many traces, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

fn open(ws: &Workspace) -> Result<Option<rusqlite::Connection>> {
    Ok(crate::store::db::open_read_only(&ws.db_path())?)
}

/// `pas traces [--agent A] [--job J] [--json]`.
pub fn list(ws: &Workspace, a: ListArgs, fmt: Format, out: &Out) -> Result<i32> {
    let filter = store::Filter {
        agent: a.agent,
        job: a.job,
        limit: a.limit,
    };
    let rows = match open(ws)? {
        Some(conn) => store::list(&conn, &filter)
            .with_context(|| format!("cannot read traces from {}", ws.db_path().display()))?,
        None => Vec::new(),
    };
    if fmt.json {
        out.json(&json!({ "traces": rows }));
        return Ok(0);
    }
    let mut t = out.table(&[
        "TRACE", "ROOT", "AGENT", "JOB", "SPANS", "DURATION", "TOKENS", "COST", "STATUS",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.trace_id.clone(),
            r.root.chars().take(40).collect(),
            r.agent.clone().unwrap_or_default(),
            r.job.clone().unwrap_or_default(),
            r.spans.to_string(),
            r.duration_ms
                .map_or("running".into(), |d| format!("{d:.0} ms")),
            format!("{}/{}", r.input_tokens, r.output_tokens),
            r.cost_usd
                .clone()
                .map_or("unknown".into(), |c| format!("${c}")),
            r.status.to_string(),
        ]);
    }
    out.print_table(&t);
    Ok(0)
}

/// The trace `id` names: a trace id, or a job id whose trace is recorded.
fn resolve(conn: &rusqlite::Connection, ws: &Workspace, id: &str) -> Result<String> {
    if crate::span::valid_trace_id(id) {
        return Ok(id.to_string());
    }
    if crate::card::valid_id(id) {
        if let Some(t) = store::trace_of_job(conn, id)? {
            return Ok(t);
        }
        if let Some((t, _)) = card_trace(ws, id) {
            return Ok(t);
        }
    }
    bail!("{id:?} is neither a trace id (32 lowercase hex digits) nor a job with a trace")
}

/// `pas trace ID [--json]`: the tree, each span's own figures, each subtree's totals.
pub fn show(ws: &Workspace, id: &str, fmt: Format, out: &Out) -> Result<i32> {
    let Some(conn) = open(ws)? else {
        bail!(
            "no trace {id}: nothing is recorded yet ({} does not exist)",
            ws.db_path().display()
        );
    };
    let trace = resolve(&conn, ws, id)?;
    let spans = store::spans(&conn, &trace, fmt.json)
        .with_context(|| format!("cannot read trace {trace} from {}", ws.db_path().display()))?;
    if spans.is_empty() {
        bail!("no trace {trace} in {}", ws.db_path().display());
    }
    let summary = store::summarize(&trace, &spans);
    let forest = tree::build(spans);
    if fmt.json {
        out.json(&json!({
            "trace_id": trace,
            "summary": summary,
            "totals": tree::totals(&forest),
            "spans": forest,
        }));
        return Ok(0);
    }
    let t = tree::totals(&forest);
    out.line(format!(
        "trace {trace}: {} spans, tokens {}/{}, cost {}{}",
        t.spans,
        t.input_tokens,
        t.output_tokens,
        t.cost_usd
            .map_or("unknown".into(), |c| format!("${}", c.normalize())),
        if t.errors > 0 {
            format!(", {} errors", t.errors)
        } else {
            String::new()
        }
    ));
    let text = tree::render(&forest);
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    Ok(0)
}

/// `pas trace diff A B [--json]`: the two traces lined up (see `trace::diff`).
pub fn diff(ws: &Workspace, a: &str, b: &str, fmt: Format, out: &Out) -> Result<i32> {
    let Some(conn) = open(ws)? else {
        bail!(
            "nothing is recorded yet ({} does not exist)",
            ws.db_path().display()
        );
    };
    let mut sides = Vec::new();
    for id in [a, b] {
        let trace = resolve(&conn, ws, id)?;
        let spans = store::spans(&conn, &trace, true).with_context(|| {
            format!("cannot read trace {trace} from {}", ws.db_path().display())
        })?;
        if spans.is_empty() {
            bail!("no trace {trace} in {}", ws.db_path().display());
        }
        sides.push((trace, spans));
    }
    let (tb, sb) = sides.pop().expect("two sides");
    let (ta, sa) = sides.pop().expect("two sides");
    let report = crate::trace::diff::diff(&ta, sa, &tb, sb);
    if fmt.json {
        out.json(&crate::trace::diff::to_json(&report));
    } else {
        let text = crate::trace::diff::render(&report);
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
    }
    Ok(0)
}

/// The trace of card `id` as its `pas:` block records it.
fn card_trace(ws: &Workspace, id: &str) -> Option<(String, String)> {
    ws.card_candidates(id)
        .iter()
        .find_map(|p| crate::workspace::read_card(p, id).ok())
        .and_then(|c| crate::trace::card_trace(&c.spec.pas))
}

/// `pas span`: one span line, appended to `work/traces/<trace_id>.jsonl` in one write.
#[derive(Debug, Args)]
pub struct SpanArgs {
    /// The trace (default: the trace of --job's card; else a new trace).
    #[arg(long)]
    pub trace: Option<String>,
    /// The span's id (default: a new one, printed; give it again to update the span).
    #[arg(long)]
    pub id: Option<String>,
    /// The parent span (default for a job's trace: the card's root span).
    #[arg(long)]
    pub parent: Option<String>,
    /// What the step is (a new span needs one).
    #[arg(long)]
    pub name: Option<String>,
    /// agent, step, tool, llm or checkpoint.
    #[arg(long)]
    pub kind: Option<String>,
    /// running, ok or error.
    #[arg(long)]
    pub status: Option<String>,
    /// The span ends now.
    #[arg(long)]
    pub end: bool,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub job: Option<String>,
    /// An attribute, KEY=VALUE (a VALUE that is JSON is taken as JSON); repeatable.
    #[arg(long = "attr")]
    pub attrs: Vec<String>,
    /// The span's input, JSON.
    #[arg(long)]
    pub input: Option<String>,
    /// The span's output, JSON.
    #[arg(long)]
    pub output: Option<String>,
}

/// Writes the line and prints `trace_id span_id`.
pub fn span(ws: &Workspace, a: SpanArgs, out: &Out) -> Result<i32> {
    let job_trace = a.job.as_deref().and_then(|j| card_trace(ws, j));
    let (trace, default_parent) = match (&a.trace, &job_trace) {
        (Some(t), _) => (t.clone(), None),
        (None, Some((t, root))) => (t.clone(), Some(root.clone())),
        (None, None) => (crate::span::new_trace_id(), None),
    };
    let new = a.id.is_none();
    let id = a.id.clone().unwrap_or_else(crate::span::new_span_id);
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut line = Map::new();
    line.insert("trace_id".into(), json!(trace));
    line.insert("span_id".into(), json!(id));
    if let Some(p) = a.parent.clone().or(default_parent.filter(|_| new)) {
        line.insert("parent_id".into(), json!(p));
    }
    if new || a.name.is_some() {
        line.insert(
            "name".into(),
            json!(a.name.clone().unwrap_or_else(|| "step".into())),
        );
        line.insert(
            "kind".into(),
            json!(a.kind.clone().unwrap_or_else(|| "step".into())),
        );
        line.insert("start".into(), json!(now));
    } else if let Some(k) = &a.kind {
        line.insert("kind".into(), json!(k));
    }
    if a.end {
        line.insert("end".into(), json!(now));
    }
    for (k, v) in [("status", &a.status), ("agent", &a.agent), ("job", &a.job)] {
        if let Some(v) = v {
            line.insert(k.into(), json!(v));
        }
    }
    let mut attrs = Map::new();
    for kv in &a.attrs {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--attr {kv:?} is not KEY=VALUE");
        };
        attrs.insert(
            k.into(),
            serde_json::from_str(v).unwrap_or_else(|_| json!(v)),
        );
    }
    if !attrs.is_empty() {
        line.insert("attrs".into(), Value::Object(attrs));
    }
    for (k, v) in [("input", &a.input), ("output", &a.output)] {
        if let Some(v) = v {
            let v: Value = serde_json::from_str(v).with_context(|| format!("--{k} is not JSON"))?;
            line.insert(k.into(), v);
        }
    }
    let text = Value::Object(line).to_string();
    // Checked as the daemon will check it, so a mistake is said here, not in its log.
    crate::span::parse_line(&text, &trace)
        .map_err(|e| anyhow::anyhow!("the span is not valid: {e}"))?;
    let dir = ws.work().join("traces");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{trace}.jsonl"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("cannot open {} (it must be a regular file)", path.display()))?;
    // One write with O_APPEND: lines of concurrent writers never interleave.
    f.write_all(format!("{text}\n").as_bytes())
        .with_context(|| format!("cannot append to {}", path.display()))?;
    out.line(format!("{trace} {id}"));
    Ok(0)
}
