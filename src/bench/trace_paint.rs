//! The big-trace part of `pas bench traces`: a trace of 10,000 spans and one of 100,000,
//! each written by an "agent" as JSONL, then `pas trace ID` timed and `/traces/{id}`
//! opened in headless Chromium, timing its first contentful paint and the moment the whole
//! span tree is in the page.
//!
//! The tree is four levels deep, as a swarm's is (job, agent, step, calls): one root, 10
//! agents, 10 steps each, the rest `llm` spans spread over the steps, each with a system
//! prompt (the same in all) and a user message of its own, tokens and an exact cost.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::cdp::Browser;
use super::percentile;
use crate::workspace::Workspace;

/// Writes a trace of `n` spans to `work/traces/` and returns its id.
fn write_trace(ws: &Workspace, n: usize) -> Result<String> {
    let trace = crate::span::new_trace_id();
    let path = ws.work().join("traces").join(format!("{trace}.jsonl"));
    std::fs::create_dir_all(path.parent().context("no traces folder")?)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let id = |i: usize| format!("{:016x}", i + 1);
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap_or_default();
    let at = |ms: usize| {
        (t0 + chrono::Duration::milliseconds(ms as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut line = |v: Value| writeln!(out, "{v}");
    line(
        json!({"span_id": id(0), "name": "job", "kind": "agent", "start": at(0), "end": at(n * 10)}),
    )?;
    let (agents, steps) = (10, 100);
    for a in 0..agents {
        line(
            json!({"span_id": id(1 + a), "parent_id": id(0), "name": format!("agent {a}"),
            "kind": "agent", "start": at(a), "end": at(n * 10), "agent": format!("bench-{a}")}),
        )?;
    }
    for s in 0..steps {
        line(
            json!({"span_id": id(1 + agents + s), "parent_id": id(1 + s % agents),
            "name": format!("step {s}"), "kind": "step", "start": at(s), "end": at(n * 10)}),
        )?;
    }
    let first = 1 + agents + steps;
    for i in first..n {
        line(
            json!({"span_id": id(i), "parent_id": id(1 + agents + i % steps),
            "name": "chat", "kind": "llm", "start": at(i * 10), "end": at(i * 10 + 8),
            "attrs": {"model": "bench-model", "input_tokens": 1200, "output_tokens": 80,
                      "cost_usd": "0.0048"},
            "input": {"messages": [
                {"role": "system", "content": "You are one agent of a benchmark swarm. Answer briefly and exactly."},
                {"role": "user", "content": format!("Question {i}: what is {i} squared?")}]},
            "output": {"text": format!("{}", i * i)}}),
        )?;
    }
    out.flush()?;
    Ok(trace)
}

/// Waits until the database holds `n` spans of `trace`.
fn wait_stored(ws: &Workspace, trace: &str, n: usize) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let have: u64 = crate::store::db::open_read_only(&ws.db_path())?
            .map(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM spans WHERE trace_id = ?1",
                    [trace],
                    |r| r.get(0),
                )
            })
            .transpose()?
            .unwrap_or(0);
        if have as usize >= n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("trace {trace}: {have} of {n} spans stored after 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Times `pas trace ID` (text) `runs` times; milliseconds.
fn time_cli(ws: &Workspace, trace: &str, runs: usize) -> Result<Vec<f64>> {
    let exe = std::env::current_exe()?;
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["trace", trace, "--root"])
            .arg(&ws.root)
            .output()?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(out.status.success(), "pas trace {trace}: {out:?}");
    }
    Ok(v)
}

/// Records, in the page, when the span tree first holds `want` rows (ms since navigation).
const WATCH_ROWS: &str = "window.__rows = null; (function tick() {
  const b = document.querySelector('#trace-tree tbody');
  if (b && b.children.length >= (window.__want || Infinity)) {
    requestAnimationFrame(() => { window.__rows = performance.now(); });
  } else { setTimeout(tick, 5); }
})();";

/// Opens `/traces/{trace}` `runs` times: (first contentful paint, whole tree drawn), ms.
fn time_page(
    browser: &mut Browser,
    dash: &str,
    trace: &str,
    n: usize,
    runs: usize,
) -> Result<Vec<(f64, f64)>> {
    let mut v = Vec::new();
    for _ in 0..runs {
        browser.open(&format!("http://{dash}/traces/{trace}"))?;
        browser.eval(&format!("window.__want = {n}; {WATCH_ROWS}"))?;
        browser.wait_for("every span row", "window.__rows !== null", 600)?;
        let r = browser.eval(
            "({fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null,
              rows: window.__rows})",
        )?;
        v.push((
            r["fcp"].as_f64().unwrap_or(f64::NAN),
            r["rows"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    Ok(v)
}

fn p50_p99(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    json!({"p50": (percentile(&s, 0.5) * 10.0).round() / 10.0,
           "p99": (percentile(&s, 0.99) * 10.0).round() / 10.0})
}

/// Runs the big-trace measurements against the daemon of `ws`, whose dashboard is `dash`.
pub fn big_traces(ws: &Workspace, dash: &str, runs: usize) -> Result<Value> {
    let mut browser = match Browser::launch() {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("no browser, page timings skipped: {e}");
            None
        }
    };
    let mut out = Vec::new();
    for n in [10_000usize, 100_000] {
        let trace = write_trace(ws, n)?;
        let stored_in = wait_stored(ws, &trace, n)?;
        let cli = time_cli(ws, &trace, runs)?;
        let mut row = json!({"spans": n, "stored_in_s": (stored_in.as_secs_f64() * 100.0).round() / 100.0,
                             "pas_trace_ms": p50_p99(&cli)});
        if let Some(b) = browser.as_mut() {
            // The first open also warms the page's assets; it counts like the others.
            let page = time_page(b, dash, &trace, n, runs)?;
            row["page_fcp_ms"] = p50_p99(&page.iter().map(|p| p.0).collect::<Vec<_>>());
            row["page_all_rows_ms"] = p50_p99(&page.iter().map(|p| p.1).collect::<Vec<_>>());
        }
        eprintln!("big trace: {row}");
        out.push(row);
    }
    Ok(json!(out))
}
