//! `pas bench gateway`: what the gateway adds to a call.
//!
//! A fast fake upstream (the one the tests use) answers every chat completion with a
//! canned body. The same open-loop load generator sends the same request straight to it
//! and through `pas serve`'s gateway, at fixed rates; latency is measured from each
//! request's scheduled send time (so a stall delays the requests behind it, as with
//! `oha --latency-correction`). Overhead is the difference of the two distributions, and
//! also what pas itself reports in `x-pas-overhead-ms`. Receipts are on (they always are);
//! after the run every answered request must have its receipt in the database.
//! Last, a closed loop finds the most requests per second the machine holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{machine_noise, percentile, BenchArgs, Daemon};
use crate::llm::config::Protocol;
use crate::llm::fake::{self, FakeOptions};
use crate::workspace::Workspace;

/// What one run of the load generator saw.
#[derive(Debug, Default)]
struct Run {
    /// Corrected latencies of answered requests, ms, sorted.
    latency: Vec<f64>,
    /// `x-pas-overhead-ms` values (through pas only), sorted.
    overhead: Vec<f64>,
    errors: u64,
    elapsed: Duration,
}

impl Run {
    fn json(&self) -> Value {
        let p = |v: &[f64], q: f64| (percentile(v, q) * 1000.0).round() / 1000.0;
        let mut j = json!({
            "requests": self.latency.len() as u64 + self.errors,
            "errors": self.errors,
            "rps": (self.latency.len() as f64 / self.elapsed.as_secs_f64()).round(),
            "p50_ms": p(&self.latency, 0.5),
            "p99_ms": p(&self.latency, 0.99),
        });
        if !self.overhead.is_empty() {
            j["pas_overhead_p50_ms"] = json!(p(&self.overhead, 0.5));
            j["pas_overhead_p99_ms"] = json!(p(&self.overhead, 0.99));
        }
        j
    }
}

fn body() -> Value {
    json!({
        "model": "canned",
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    })
}

/// Sends `rate` requests per second for `seconds` to `url`, on schedule.
async fn open_loop(client: &reqwest::Client, url: &str, rate: u32, seconds: u32) -> Run {
    let n = (rate * seconds) as usize;
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
    let payload = Arc::new(body().to_string());
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + gap * i as u32;
        let client = client.clone();
        let url = url.to_string();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            one(&client, &url, &payload, due.into_std()).await
        }));
    }
    collect(tasks, start.into_std()).await
}

/// As many requests as `workers` connections carry, for `seconds`.
async fn closed_loop(client: &reqwest::Client, url: &str, workers: usize, seconds: u32) -> Run {
    let payload = Arc::new(body().to_string());
    let start = Instant::now();
    let until = start + Duration::from_secs(u64::from(seconds));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let client = client.clone();
        let url = url.to_string();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < until {
                out.push(one(&client, &url, &payload, Instant::now()).await);
            }
            out
        }));
    }
    let mut run = Run::default();
    for t in tasks {
        for r in t.await.unwrap_or_default() {
            add(&mut run, r);
        }
    }
    run.elapsed = start.elapsed();
    finish(run)
}

type One = Result<(f64, Option<f64>), ()>;

async fn one(client: &reqwest::Client, url: &str, payload: &str, due: Instant) -> One {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .map_err(|_| ())?;
    let ok = resp.status().is_success();
    let overhead = resp
        .headers()
        .get("x-pas-overhead-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok());
    let _ = resp.bytes().await.map_err(|_| ())?;
    if !ok {
        return Err(());
    }
    Ok((due.elapsed().as_secs_f64() * 1000.0, overhead))
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<One>>, start: Instant) -> Run {
    let mut run = Run::default();
    for t in tasks {
        add(&mut run, t.await.unwrap_or(Err(())));
    }
    run.elapsed = start.elapsed();
    finish(run)
}

fn add(run: &mut Run, r: One) {
    match r {
        Ok((ms, o)) => {
            run.latency.push(ms);
            run.overhead.extend(o);
        }
        Err(()) => run.errors += 1,
    }
}

fn finish(mut run: Run) -> Run {
    run.latency.sort_by(f64::total_cmp);
    run.overhead.sort_by(f64::total_cmp);
    run
}

fn receipts(ws: &Workspace) -> Result<u64> {
    let conn = crate::store::db::open_read_only(&ws.db_path())?
        .context("the telemetry database is missing")?;
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM receipts WHERE status = 'ok'",
        [],
        |r| r.get(0),
    )?)
}

/// Runs the gateway benchmark and prints its figures.
pub fn gateway(args: &BenchArgs) -> Result<i32> {
    let upstream =
        fake::try_start(FakeOptions::default()).context("cannot start the fake upstream")?;
    let dir = tempfile::Builder::new()
        .prefix("pas-bench-gw-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let ws = Workspace::at(dir.path().canonicalize()?);
    crate::workspace::init(&ws.root)?;
    std::fs::write(
        ws.config_path(),
        format!(
            "providers:\n  - name: fake\n    protocol: openai\n    base_url: {}\n    models:\n      - id: canned\n        capabilities: [chat]\n        price_per_mtok: {{input: \"0.15\", output: \"0.60\"}}\n",
            upstream.base_url(Protocol::Openai)
        ),
    )?;
    let noise = machine_noise();
    let daemon = Daemon::start(&ws.root)?;
    let addrs = super::wait_for(Duration::from_secs(20), "the gateway address", || {
        ws.root.join(".pas/serve.json").exists()
    })
    .and_then(|_| Ok(std::fs::read_to_string(ws.root.join(".pas/serve.json"))?))?;
    let addrs: Value = serde_json::from_str(&addrs)?;
    let Some(gw) = addrs["gateway"].as_str() else {
        bail!("serve.json has no gateway address: {addrs}");
    };
    let via = format!("http://{gw}/v1/chat/completions");
    let direct = format!("{}/chat/completions", upstream.base_url(Protocol::Openai));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    let rates: Vec<u32> = args.rates.clone();
    let seconds = args.seconds;
    let mut results = Vec::new();
    let mut answered = 0u64;
    rt.block_on(async {
        // Warm both paths (connections, the daemon's caches).
        let _ = open_loop(&client, &direct, 200, 1).await;
        let w = open_loop(&client, &via, 200, 1).await;
        answered += w.latency.len() as u64;
        for rate in &rates {
            let d = open_loop(&client, &direct, *rate, seconds).await;
            let p = open_loop(&client, &via, *rate, seconds).await;
            answered += p.latency.len() as u64;
            results.push(json!({
                "rate": rate,
                "direct": d.json(),
                "through_pas": p.json(),
                "overhead_p50_ms": ((percentile(&p.latency, 0.5) - percentile(&d.latency, 0.5)) * 1000.0).round() / 1000.0,
                "overhead_p99_ms": ((percentile(&p.latency, 0.99) - percentile(&d.latency, 0.99)) * 1000.0).round() / 1000.0,
            }));
        }
        let d = closed_loop(&client, &direct, 32, seconds).await;
        let p = closed_loop(&client, &via, 32, seconds).await;
        answered += p.latency.len() as u64;
        results.push(json!({"rate": "max (32 connections, closed loop)", "direct": d.json(), "through_pas": p.json()}));
    });
    let rss = daemon.peak_rss_mb();
    drop(daemon); // SIGTERM: the daemon writes every pending receipt before it exits
    let written = receipts(&ws)?;
    let report = json!({
        "runs": results,
        "daemon_peak_rss_mb": rss,
        "answered_through_pas": answered,
        "receipts_written": written,
        "receipts_lost": answered.saturating_sub(written),
        "noise_cpu_loop_ms": {"min": noise.0, "median": noise.1, "max": noise.2},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "pas bench gateway: fake upstream {}, receipts on",
            upstream.addr()
        );
        for r in &report["runs"].as_array().cloned().unwrap_or_default() {
            println!("  rate {}:", r["rate"]);
            println!("    direct       {}", r["direct"]);
            println!("    through pas  {}", r["through_pas"]);
            if r.get("overhead_p50_ms").is_some() {
                println!(
                    "    overhead     p50 {} ms, p99 {} ms (client side)",
                    r["overhead_p50_ms"], r["overhead_p99_ms"]
                );
            }
        }
        println!("  daemon peak RSS {:?} MiB", rss);
        println!(
            "  receipts: {answered} answered, {written} written, {} lost",
            answered.saturating_sub(written)
        );
        println!(
            "  machine noise: a fixed CPU loop took {:.2} / {:.2} / {:.2} ms (min / median / max)",
            noise.0, noise.1, noise.2
        );
    }
    Ok(if answered == written { 0 } else { 1 })
}
