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
//!
//! With `--peer URL` another OpenAI-compatible proxy (LiteLLM, in `bench/vs-litellm.sh`)
//! is measured the same way against the same fake upstream, and the report gives each
//! proxy's overhead and their ratio. With `--runs N` every rate is measured N times,
//! the targets taking turns, and each figure is the median of the runs with its min and
//! max: one run of a few seconds on a shared two-core machine is not a figure.

use std::net::SocketAddr;
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
pub(super) struct Run {
    /// Corrected latencies of answered requests, ms, sorted.
    pub(super) latency: Vec<f64>,
    /// `x-pas-overhead-ms` values (through pas only), sorted.
    overhead: Vec<f64>,
    pub(super) errors: u64,
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
pub(super) async fn open_loop(client: &reqwest::Client, url: &str, rate: u32, seconds: u32) -> Run {
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

pub(super) fn receipts(ws: &Workspace) -> Result<u64> {
    let conn = crate::store::db::open_read_only(&ws.db_path())?
        .context("the telemetry database is missing")?;
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM receipts WHERE status = 'ok'",
        [],
        |r| r.get(0),
    )?)
}

/// Median, min and max of a figure over the runs.
fn spread(mut v: Vec<f64>) -> Value {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    if v.is_empty() {
        return Value::Null;
    }
    json!({"median": r(percentile(&v, 0.5)), "min": r(v[0]), "max": r(v[v.len() - 1])})
}

/// One proxy or the upstream itself, and what each run through it saw.
struct Target {
    name: String,
    url: String,
    runs: Vec<Run>,
}

/// The figures of one rate: per target, and each proxy's overhead over direct.
fn rate_report(rate: u32, targets: &[Target]) -> Value {
    let direct = &targets[0];
    let mut out = json!({"rate": rate});
    for t in targets {
        let q = |q: f64| t.runs.iter().map(|r| percentile(&r.latency, q)).collect();
        let mut j = json!({
            "p50_ms": spread(q(0.5)),
            "p99_ms": spread(q(0.99)),
            "errors": t.runs.iter().map(|r| r.errors).sum::<u64>(),
            "runs": t.runs.iter().map(Run::json).collect::<Vec<_>>(),
        });
        if t.name != direct.name {
            // Overhead within each run (same minute, same machine state), then spread.
            let over = |q: f64| {
                t.runs
                    .iter()
                    .zip(&direct.runs)
                    .map(|(p, d)| percentile(&p.latency, q) - percentile(&d.latency, q))
                    .collect()
            };
            j["overhead_p50_ms"] = spread(over(0.5));
            j["overhead_p99_ms"] = spread(over(0.99));
        }
        out[t.name.as_str()] = j;
    }
    if let Some(peer) = targets.get(2) {
        for k in ["overhead_p50_ms", "overhead_p99_ms"] {
            let a = out[peer.name.as_str()][k]["median"].as_f64();
            let b = out["pas"][k]["median"].as_f64();
            if let (Some(a), Some(b)) = (a, b) {
                let ratio = if b > 0.0 {
                    ((a / b) * 10.0).round() / 10.0
                } else {
                    f64::NAN
                };
                out[format!("ratio_{}_to_pas_{k}", peer.name)] = json!(ratio);
            }
        }
    }
    out
}

/// Runs the gateway benchmark and prints its figures.
pub fn gateway(args: &BenchArgs) -> Result<i32> {
    let at = SocketAddr::from(([127, 0, 0, 1], args.upstream_port.unwrap_or(0)));
    let upstream = fake::try_start_at(FakeOptions::default(), at)
        .with_context(|| format!("cannot start the fake upstream on {at}"))?;
    eprintln!("fake upstream: {}", upstream.base_url(Protocol::Openai));
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
    let target = |name: &str, url: String| Target {
        name: name.into(),
        url,
        runs: Vec::new(),
    };
    let mut targets = vec![
        target(
            "direct",
            format!("{}/chat/completions", upstream.base_url(Protocol::Openai)),
        ),
        target("pas", format!("http://{gw}/v1/chat/completions")),
    ];
    if let Some(peer) = &args.peer {
        let url = format!("{}/chat/completions", peer.trim_end_matches('/'));
        targets.push(target(&args.peer_name, url));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = load_client()?;
    let (seconds, runs) = (args.seconds, args.runs.max(1));
    let mut results = Vec::new();
    let mut answered = 0u64;
    rt.block_on(async {
        // Warm every path (connections, the daemon's caches, a Python proxy's imports).
        for t in &targets {
            let w = open_loop(&client, &t.url, 100, 2).await;
            if t.name == "pas" {
                answered += w.latency.len() as u64;
            }
            if w.latency.is_empty() {
                eprintln!("warning: no answer from {} at {}", t.name, t.url);
            }
        }
        for &rate in &args.rates {
            for t in targets.iter_mut() {
                t.runs.clear();
            }
            for run in 0..runs {
                for t in targets.iter_mut() {
                    let r = open_loop(&client, &t.url, rate, seconds).await;
                    eprintln!(
                        "rate {rate}, run {}/{runs}, {:<8} {}",
                        run + 1,
                        t.name,
                        r.json()
                    );
                    if t.name == "pas" {
                        answered += r.latency.len() as u64;
                    }
                    t.runs.push(r);
                }
            }
            results.push(rate_report(rate, &targets));
        }
        if !args.no_max {
            let mut max = json!({"rate": "max (32 connections, closed loop)"});
            for t in &targets {
                let r = closed_loop(&client, &t.url, 32, seconds).await;
                if t.name == "pas" {
                    answered += r.latency.len() as u64;
                }
                max[t.name.as_str()] = r.json();
            }
            results.push(max);
        }
    });
    let rss = daemon.peak_rss_mb();
    drop(daemon); // SIGTERM: the daemon writes every pending receipt before it exits
    let written = receipts(&ws)?;
    let report = json!({
        "runs_per_rate": runs,
        "seconds_per_run": seconds,
        "results": results,
        "daemon_peak_rss_mb": rss,
        "answered_through_pas": answered,
        "receipts_written": written,
        "receipts_lost": answered.saturating_sub(written),
        "noise_cpu_loop_ms": {"min": noise.0, "median": noise.1, "max": noise.2},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &targets, upstream.addr());
    }
    Ok(if answered == written { 0 } else { 1 })
}

fn print_report(report: &Value, targets: &[Target], upstream: SocketAddr) {
    let m = |v: &Value| format!("{} ms ({}–{})", v["median"], v["min"], v["max"]);
    println!(
        "pas bench gateway: fake upstream {upstream}, receipts on; median (min–max) of {} runs",
        report["runs_per_rate"]
    );
    for r in report["results"].as_array().into_iter().flatten() {
        println!("  rate {}:", r["rate"]);
        for t in targets {
            let v = &r[t.name.as_str()];
            if v.get("p50_ms").and_then(|p| p.get("median")).is_none() {
                println!("    {:<8} {v}", t.name);
                continue;
            }
            print!(
                "    {:<8} p50 {}, p99 {}",
                t.name,
                m(&v["p50_ms"]),
                m(&v["p99_ms"])
            );
            if v.get("overhead_p50_ms").is_some() {
                print!(
                    "; overhead p50 {}, p99 {}",
                    m(&v["overhead_p50_ms"]),
                    m(&v["overhead_p99_ms"])
                );
            }
            println!("; errors {}", v["errors"]);
        }
        if let Some(p) = targets.get(2) {
            let k = |q: &str| r[format!("ratio_{}_to_pas_overhead_{q}_ms", p.name)].clone();
            println!(
                "    ratio {} / pas overhead: p50 {}x, p99 {}x",
                p.name,
                k("p50"),
                k("p99")
            );
        }
    }
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "  daemon peak RSS {:.1} MiB",
        f(&report["daemon_peak_rss_mb"])
    );
    println!(
        "  receipts: {} answered through pas, {} written, {} lost",
        report["answered_through_pas"], report["receipts_written"], report["receipts_lost"]
    );
    let n = &report["noise_cpu_loop_ms"];
    println!(
        "  machine noise: a fixed CPU loop took {:.2} / {:.2} / {:.2} ms (min / median / max)",
        f(&n["min"]),
        f(&n["median"]),
        f(&n["max"])
    );
}

/// The load generator's HTTP client: connections kept for every request in flight, no
/// Nagle delay, a minute's patience.
pub(super) fn load_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
}
