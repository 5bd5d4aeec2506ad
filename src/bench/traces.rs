//! `pas bench traces`: what tracing costs the gateway, and how fast agents' span lines
//! are taken in.
//!
//! Two daemons over the same fast fake upstream, one with `traces.capture: full` and one
//! with `off`, are measured side by side: at each rate the runs take turns (direct, full,
//! off), and the report gives each one's p50 and p99 and the difference full - off, the
//! price of recording every call's span with its messages. After the runs every answered
//! call through the `full` daemon must have its span and its receipt. Then agents' JSONL
//! ingest: `--rate` span lines a second for `--seconds`, appended to 16 trace files, and
//! the time until the database holds every one (lines lost: none allowed).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::gateway::{open_loop, Run};
use super::{percentile, BenchArgs, Daemon};
use crate::llm::config::Protocol;
use crate::llm::fake::{self, FakeOptions};
use crate::workspace::Workspace;

/// A workspace with one provider on `upstream` and `traces.capture: capture`, its daemon,
/// its gateway URL and its dashboard's address.
fn start(
    base: &std::path::Path,
    upstream: &str,
    capture: &str,
) -> Result<(Workspace, Daemon, String, String)> {
    let root = base.join(capture);
    std::fs::create_dir_all(&root)?;
    let ws = Workspace::at(root.canonicalize()?);
    crate::workspace::init(&ws.root)?;
    std::fs::write(
        ws.config_path(),
        format!(
            "traces: {{capture: {capture}}}\nproviders:\n  - name: fake\n    protocol: openai\n    base_url: {upstream}\n    models:\n      - id: canned\n        capabilities: [chat]\n        price_per_mtok: {{input: \"0.15\", output: \"0.60\"}}\n"
        ),
    )?;
    let daemon = Daemon::start(&ws.root)?;
    let serve = ws.root.join(".pas/serve.json");
    super::wait_for(Duration::from_secs(20), "the gateway address", || {
        serve.exists()
    })?;
    let addrs: Value = serde_json::from_str(&std::fs::read_to_string(&serve)?)?;
    let Some(gw) = addrs["gateway"].as_str() else {
        bail!("serve.json has no gateway address: {addrs}");
    };
    let url = format!("http://{gw}/v1/chat/completions");
    let dash = addrs["dashboard"].as_str().unwrap_or_default().to_string();
    Ok((ws, daemon, url, dash))
}

fn count(ws: &Workspace, sql: &str) -> Result<u64> {
    let conn = crate::store::db::open_read_only(&ws.db_path())?
        .context("the telemetry database is missing")?;
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

fn median_of(runs: &[Run], q: f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(|r| percentile(&r.latency, q)).collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5) * 1000.0).round() / 1000.0
}

/// Runs the traces benchmark and prints its figures.
pub fn traces(args: &BenchArgs) -> Result<i32> {
    let upstream = fake::start(FakeOptions::default());
    let base_url = upstream.base_url(Protocol::Openai);
    let dir = tempfile::Builder::new()
        .prefix("pas-bench-traces-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let (full_ws, full_d, full_url, full_dash) = start(dir.path(), &base_url, "full")?;
    let (_off_ws, off_d, off_url, _) = start(dir.path(), &base_url, "off")?;
    let direct = format!("{base_url}/chat/completions");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = super::gateway::load_client()?;
    let runs = args.runs.max(1);
    let mut answered_full = 0u64;
    let mut results = Vec::new();
    rt.block_on(async {
        for url in [&direct, &full_url, &off_url] {
            let w = open_loop(&client, url, 100, 2).await;
            if *url == full_url {
                answered_full += w.latency.len() as u64;
            }
        }
        for &rate in &args.rates {
            let (mut d, mut f, mut o) = (Vec::new(), Vec::new(), Vec::new());
            for run in 0..runs {
                d.push(open_loop(&client, &direct, rate, args.seconds).await);
                let r = open_loop(&client, &full_url, rate, args.seconds).await;
                answered_full += r.latency.len() as u64;
                f.push(r);
                o.push(open_loop(&client, &off_url, rate, args.seconds).await);
                eprintln!("rate {rate}, run {}/{runs} done", run + 1);
            }
            let row = |runs: &[Run]| {
                json!({
                    "p50_ms": median_of(runs, 0.5),
                    "p99_ms": median_of(runs, 0.99),
                    "errors": runs.iter().map(|r| r.errors).sum::<u64>(),
                })
            };
            let diff = |q: f64| ((median_of(&f, q) - median_of(&o, q)) * 1000.0).round() / 1000.0;
            results.push(json!({
                "rate": rate,
                "direct": row(&d),
                "capture_full": row(&f),
                "capture_off": row(&o),
                "full_minus_off_p50_ms": diff(0.5),
                "full_minus_off_p99_ms": diff(0.99),
            }));
        }
    });
    drop(off_d);
    // Every answered call has its span and its receipt (the writer may still be busy).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut spans, mut receipts) = (0, 0);
    while Instant::now() < deadline {
        spans = count(
            &full_ws,
            "SELECT COUNT(*) FROM spans WHERE kind = 'llm' AND status = 'ok'",
        )?;
        receipts = super::gateway::receipts(&full_ws)?;
        if spans >= answered_full && receipts >= answered_full {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ingest = ingest(&full_ws, args.rate, args.seconds)?;
    let big = super::trace_paint::big_traces(&full_ws, &full_dash, runs)?;
    drop(full_d);
    let report = json!({
        "runs_per_rate": runs,
        "seconds_per_run": args.seconds,
        "gateway": results,
        "answered_with_capture_full": answered_full,
        "llm_spans_written": spans,
        "receipts_written": receipts,
        "jsonl_ingest": ingest,
        "big_traces": big,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    let lost = ingest["lost"].as_u64().unwrap_or(1);
    Ok(
        if spans >= answered_full && receipts >= answered_full && lost == 0 {
            0
        } else {
            1
        },
    )
}

/// Appends `rate` span lines a second for `seconds` to 16 trace files (one `write` each,
/// `O_APPEND`, as agents do), then waits for the database to hold them all.
fn ingest(ws: &Workspace, rate: u32, seconds: u32) -> Result<Value> {
    let dir = ws.work().join("traces");
    std::fs::create_dir_all(&dir)?;
    let traces: Vec<String> = (0..16).map(|_| crate::span::new_trace_id()).collect();
    let mut files = Vec::new();
    for t in &traces {
        files.push(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{t}.jsonl")))?,
        );
    }
    let total = u64::from(rate) * u64::from(seconds);
    let start = Instant::now();
    let per_tick = (rate / 100).max(1) as u64;
    let mut written = 0u64;
    while written < total {
        let due = start + Duration::from_secs_f64(written as f64 / f64::from(rate));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for _ in 0..per_tick.min(total - written) {
            let i = (written % 16) as usize;
            let line = json!({"span_id": format!("{:016x}", written + 1), "name": "step", "kind": "step",
                "start": "2026-12-07T10:00:00Z", "end": "2026-12-07T10:00:01Z", "agent": "bench",
                "attrs": {"n": written}});
            files[i].write_all(format!("{line}\n").as_bytes())?;
            written += 1;
        }
    }
    let wrote_in = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stored = 0;
    while Instant::now() < deadline {
        stored = count(ws, "SELECT COUNT(*) FROM spans WHERE source = 'file'")?;
        if stored >= total {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let all_in = start.elapsed();
    Ok(json!({
        "lines": total,
        "target_rate": rate,
        "written_in_s": (wrote_in.as_secs_f64() * 100.0).round() / 100.0,
        "stored": stored,
        "lost": total.saturating_sub(stored),
        "all_stored_in_s": (all_in.as_secs_f64() * 100.0).round() / 100.0,
        // How far the database was behind the writer when it stopped writing: a reader
        // that keeps up has this near zero, whatever the rate.
        "behind_at_end_s": ((all_in.as_secs_f64() - wrote_in.as_secs_f64()) * 100.0).round() / 100.0,
        "written_per_s": (total as f64 / wrote_in.as_secs_f64()).round(),
        "sustained_spans_per_s": (stored as f64 / all_in.as_secs_f64()).round(),
    }))
}

fn print_report(r: &Value) {
    println!(
        "pas bench traces: median of {} runs of {} s each",
        r["runs_per_rate"], r["seconds_per_run"]
    );
    for g in r["gateway"].as_array().into_iter().flatten() {
        println!(
            "  rate {}: direct p50 {} / p99 {} ms; capture full p50 {} / p99 {} ms; off p50 {} / p99 {} ms; full - off: p50 {} ms, p99 {} ms",
            g["rate"],
            g["direct"]["p50_ms"],
            g["direct"]["p99_ms"],
            g["capture_full"]["p50_ms"],
            g["capture_full"]["p99_ms"],
            g["capture_off"]["p50_ms"],
            g["capture_off"]["p99_ms"],
            g["full_minus_off_p50_ms"],
            g["full_minus_off_p99_ms"]
        );
    }
    println!(
        "  capture full: {} calls answered, {} llm spans, {} receipts",
        r["answered_with_capture_full"], r["llm_spans_written"], r["receipts_written"]
    );
    let i = &r["jsonl_ingest"];
    println!(
        "  JSONL ingest: {} lines at {}/s written in {} s ({}/s), all stored in {} s ({} s after the last write; {} spans/s over the whole run), {} lost",
        i["lines"], i["target_rate"], i["written_in_s"], i["written_per_s"], i["all_stored_in_s"],
        i["behind_at_end_s"], i["sustained_spans_per_s"], i["lost"]
    );
    for b in r["big_traces"].as_array().into_iter().flatten() {
        println!(
            "  a {}-span trace: stored in {} s; pas trace p50 {} / p99 {} ms; /traces/ID first paint p50 {} / p99 {} ms, every row drawn p50 {} / p99 {} ms",
            b["spans"], b["stored_in_s"], b["pas_trace_ms"]["p50"], b["pas_trace_ms"]["p99"],
            b["page_fcp_ms"]["p50"], b["page_fcp_ms"]["p99"], b["page_all_rows_ms"]["p50"], b["page_all_rows_ms"]["p99"]
        );
    }
}
