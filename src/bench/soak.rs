//! `pas bench soak`: an hour (by default) at a steady load, to show that nothing grows
//! without bound.
//!
//! Cards drop into the inbox at `--cards-per-s`; agents (threads that act as agents would:
//! beat every second, move each card they get to `done/`) finish them; an operator prunes
//! `done/` of cards older than a minute, as a user would keep a board tidy (pas forgets a
//! card deleted by hand and commits the deletion), so the board itself stays the same size
//! and whatever still grows is pas's own. Meanwhile a client calls the gateway at
//! `--calls-per-s` against a fake upstream, and one WebSocket client reads the dashboard's
//! stream, checking that `seq` never skips.
//!
//! Progress goes to stderr (so `--json` prints only the report on stdout). Every sample
//! (120 per run, at least 5 s apart) records the daemon's RSS, open file
//! descriptors and threads. The verdict compares the second half of the run with itself:
//! after warm-up, RSS and descriptors must stay flat. At the end every card must be done
//! or pruned, every answered call must have its receipt, and `git status` must be clean.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::crash::{agents, git};
use super::gateway::receipts;
use super::{drop_card, machine_noise, scratch, BenchArgs, Daemon};
use crate::card::State;
use crate::llm::config::Protocol;
use crate::llm::fake::{self, FakeOptions};
use crate::workspace::Workspace;

/// Agents finishing cards in the soak (the crash bench's agents).
const AGENTS: usize = 8;
/// A done card older than this is pruned by the simulated operator.
const KEEP_DONE: Duration = Duration::from_secs(60);

/// Counters the load threads share with the sampler.
#[derive(Default)]
struct Load {
    dropped: AtomicU64,
    pruned: AtomicU64,
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
    ws_messages: AtomicU64,
    ws_gaps: AtomicU64,
    ws_resyncs: AtomicU64,
}

/// One look at the daemon.
struct Sample {
    at_s: f64,
    rss_mib: f64,
    fds: usize,
    threads: usize,
    board: usize,
}

impl Sample {
    fn take(pid: u32, started: Instant, ws: &Workspace) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |key: &str| -> f64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |rd| rd.count());
        Sample {
            at_s: started.elapsed().as_secs_f64(),
            rss_mib: field("VmRSS:") / 1024.0,
            fds,
            threads: field("Threads:") as usize,
            board: count_cards(ws),
        }
    }

    fn json(&self) -> Value {
        json!({"at_s": self.at_s.round(), "rss_mib": (self.rss_mib * 10.0).round() / 10.0,
               "fds": self.fds, "threads": self.threads, "cards_on_board": self.board})
    }
}

/// Cards in every state folder.
fn count_cards(ws: &Workspace) -> usize {
    State::ALL.iter().map(|&state| count_in(ws, state)).sum()
}

/// Removes done cards older than [`KEEP_DONE`]; how many.
fn prune(ws: &Workspace) -> u64 {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(ws.state_dir(State::Done)) else {
        return 0;
    };
    let now = SystemTime::now();
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > KEEP_DONE);
        if old && e.file_name().to_string_lossy().ends_with(".yaml") {
            n += u64::from(std::fs::remove_file(e.path()).is_ok());
        }
    }
    n
}

/// Drops cards at `rate` per second and prunes `done/` every ten seconds, until `stop`.
fn dropper(ws: Workspace, rate: u32, load: Arc<Load>, stop: Arc<AtomicBool>) -> Result<()> {
    let inbox = ws.state_dir(State::Inbox);
    let start = Instant::now();
    let mut last_prune = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(Duration::from_millis(200)));
            continue;
        }
        drop_card(&inbox, &format!("S{i:08}"))?;
        load.dropped.fetch_add(1, Ordering::Relaxed);
        i += 1;
        if last_prune.elapsed() >= Duration::from_secs(10) {
            load.pruned.fetch_add(prune(&ws), Ordering::Relaxed);
            last_prune = Instant::now();
        }
    }
    Ok(())
}

/// Calls the gateway at `rate` per second (open loop), and reads the dashboard's stream.
async fn clients(
    gateway: String,
    dashboard: String,
    rate: u32,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) {
    let reader = tokio::spawn(read_stream(dashboard, load.clone(), stop.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let url = format!("http://{gateway}/v1/chat/completions");
    let body = json!({"model": "canned", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello in five words."}]})
    .to_string();
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let (client, url, body, load) = (client.clone(), url.clone(), body.clone(), load.clone());
        let agent = format!("agent-{}", n % AGENTS as u64);
        n += 1;
        tokio::spawn(async move {
            let sent = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-pas-agent", agent)
                .body(body)
                .send()
                .await;
            let ok = match sent {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let counter = if ok {
                &load.calls_ok
            } else {
                &load.calls_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Let the calls in flight finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
}

/// One dashboard client: counts messages, gaps in `seq`, and resyncs (fresh snapshots).
async fn read_stream(dashboard: String, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let Ok((mut socket, _)) =
        tokio_tungstenite::connect_async(format!("ws://{dashboard}/ws")).await
    else {
        load.ws_gaps.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut last: Option<u64> = None;
    while let Some(Ok(msg)) = socket.next().await {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        load.ws_messages.fetch_add(1, Ordering::Relaxed);
        let seq = v["seq"].as_u64();
        if v["type"] == "snapshot" {
            if last.is_some() {
                load.ws_resyncs.fetch_add(1, Ordering::Relaxed);
            }
        } else if let (Some(prev), Some(seq)) = (last, seq) {
            if seq != prev + 1 {
                load.ws_gaps.fetch_add(1, Ordering::Relaxed);
            }
        }
        last = seq.or(last);
    }
}

/// Least-squares slope of `y` over `x`, per hour of `x` seconds.
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den * 3600.0
    }
}

/// Runs the soak and prints a line per sample, then the verdict.
pub fn soak(args: &BenchArgs) -> Result<i32> {
    let length = Duration::from_secs(u64::from(args.minutes.max(1)) * 60);
    let every = (length / 120).max(Duration::from_secs(5));
    let upstream =
        fake::try_start(FakeOptions::default()).context("cannot start the fake upstream")?;
    let (_dir, ws) = scratch(args.dir.as_deref(), AGENTS, 10_000, args)?;
    let mut config = std::fs::read_to_string(ws.config_path())?;
    config.push_str(&format!(
        "providers:\n  - name: fake\n    protocol: openai\n    base_url: {}\n    models:\n      - id: canned\n        capabilities: [chat]\n        price_per_mtok: {{input: \"0.15\", output: \"0.60\"}}\n",
        upstream.base_url(Protocol::Openai)
    ));
    std::fs::write(ws.config_path(), config)?;
    let noise = machine_noise();
    let daemon = Daemon::start_quiet(&ws.root)?;
    let addrs: Value = serde_json::from_str(&std::fs::read_to_string(
        crate::server::addresses_path(&ws),
    )?)?;
    let (Some(gw), Some(dash)) = (addrs["gateway"].as_str(), addrs["dashboard"].as_str()) else {
        bail!("serve.json lacks an address: {addrs}");
    };
    eprintln!(
        "pas bench soak: {} min; {} cards/s, {AGENTS} agents beating every second, {} gateway calls/s, 1 dashboard client; a sample every {} s",
        args.minutes, args.cards_per_s, args.calls_per_s, every.as_secs()
    );

    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    // The agents go on after the load stops, until every card is done.
    let agents_stop = Arc::new(AtomicBool::new(false));
    let agent_threads = agents(&ws, agents_stop.clone());
    let drops = {
        let (ws, load, stop) = (ws.clone(), load.clone(), stop.clone());
        let rate = args.cards_per_s;
        std::thread::spawn(move || dropper(ws, rate, load, stop))
    };
    let callers = {
        let (gw, dash, load, stop) = (gw.to_string(), dash.to_string(), load.clone(), stop.clone());
        let rate = args.calls_per_s;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(clients(gw, dash, rate, load, stop));
        })
    };

    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < length {
        std::thread::sleep(every.min(length.saturating_sub(started.elapsed())));
        let s = Sample::take(daemon.pid(), started, &ws);
        eprintln!(
            "  {:>5.0} s  RSS {:>6.1} MiB  fds {:>4}  threads {:>3}  board {:>6}  dropped {:>8}  calls {:>8}  ws msgs {:>9}",
            s.at_s, s.rss_mib, s.fds, s.threads, s.board,
            load.dropped.load(Ordering::Relaxed),
            load.calls_ok.load(Ordering::Relaxed),
            load.ws_messages.load(Ordering::Relaxed),
        );
        samples.push(s);
    }
    stop.store(true, Ordering::SeqCst);
    drops
        .join()
        .map_err(|_| anyhow::anyhow!("the card dropper panicked"))??;
    let _ = callers.join();
    let settled = super::wait_for(Duration::from_secs(120), "every card done", || {
        count_in(&ws, State::Inbox) + count_in(&ws, State::Assigned) == 0
    });
    agents_stop.store(true, Ordering::SeqCst);
    for a in agent_threads {
        let _ = a.join();
    }
    let peak = daemon.peak_rss_mb();
    drop(daemon); // SIGTERM: commits and writes what is pending
    let verdict = verdict(&samples);
    let mut problems: Vec<String> = Vec::new();
    if let Err(e) = settled {
        problems.push(format!("{e:#}"));
    }
    let (dropped, pruned) = (
        load.dropped.load(Ordering::Relaxed),
        load.pruned.load(Ordering::Relaxed),
    );
    let done = count_in(&ws, State::Done) as u64;
    let failed = count_in(&ws, State::Failed) as u64;
    if dropped != pruned + done + failed {
        problems.push(format!(
            "{dropped} cards dropped, but {pruned} pruned + {done} done + {failed} failed"
        ));
    }
    let answered = load.calls_ok.load(Ordering::Relaxed);
    let written = receipts(&ws)?;
    if written != answered {
        problems.push(format!("{answered} calls answered, {written} receipts"));
    }
    let (_, status) = git(&ws.root, &["status", "--porcelain", "--", "work"])?;
    let dirty = status
        .lines()
        .filter(|l| !l.contains("work/heartbeats/"))
        .count();
    if dirty > 0 {
        problems.push(format!("{dirty} paths uncommitted in work/"));
    }
    let gaps = load.ws_gaps.load(Ordering::Relaxed);
    if gaps > 0 {
        problems.push(format!("{gaps} gaps in the dashboard stream"));
    }
    problems.extend(verdict.1.iter().cloned());
    let report = json!({
        "minutes": args.minutes,
        "cards_per_s": args.cards_per_s,
        "calls_per_s": args.calls_per_s,
        "cards_dropped": dropped, "cards_pruned": pruned, "cards_done_at_end": done,
        "cards_failed": failed,
        "calls_answered": answered, "calls_failed": load.calls_failed.load(Ordering::Relaxed),
        "receipts_written": written,
        "ws_messages": load.ws_messages.load(Ordering::Relaxed),
        "ws_gaps": gaps, "ws_resyncs": load.ws_resyncs.load(Ordering::Relaxed),
        "daemon_peak_rss_mib": peak,
        "second_half": verdict.0,
        "noise_cpu_loop_ms": {"min": noise.0, "median": noise.1, "max": noise.2},
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        "problems": problems,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "cards: {dropped} dropped, {pruned} pruned, {done} done at the end, {failed} failed; calls: {answered} answered, {} failed, {written} receipts; dashboard: {} messages, {gaps} gaps, {} resyncs",
            report["calls_failed"], report["ws_messages"], report["ws_resyncs"]
        );
        println!("second half: {}", report["second_half"]);
        println!(
            "daemon peak RSS {peak:.1?} MiB; machine noise median {:.2} ms (min {:.2}, max {:.2})",
            noise.1, noise.0, noise.2
        );
        match problems.as_slice() {
            [] => println!("verdict: nothing grew; nothing lost"),
            p => println!("verdict: FAILED: {}", p.join("; ")),
        }
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// Cards in one state folder (and its agent subfolders).
fn count_in(ws: &Workspace, state: State) -> usize {
    walkdir::WalkDir::new(ws.state_dir(state))
        .into_iter()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            e.file_type().is_file() && name.ends_with(".yaml") && !name.starts_with('.')
        })
        .count()
}

/// The second half of the run: RSS and descriptors at its start and end, their slopes, and
/// what grew. RSS may wander a little (the allocator); it must not climb: a trend of more
/// than 10 % (and 8 MiB) over the half is growth. Descriptors come and go with connections;
/// a trend of more than 8 over the half is growth.
fn verdict(samples: &[Sample]) -> (Value, Vec<String>) {
    let half = &samples[samples.len() / 2..];
    let (Some(first), Some(last)) = (half.first(), half.last()) else {
        return (json!(null), vec!["no samples".into()]);
    };
    let rss: Vec<(f64, f64)> = half.iter().map(|s| (s.at_s, s.rss_mib)).collect();
    let fds: Vec<(f64, f64)> = half.iter().map(|s| (s.at_s, s.fds as f64)).collect();
    let rss_max = half.iter().map(|s| s.rss_mib).fold(f64::MIN, f64::max);
    let fds_max = half.iter().map(|s| s.fds).max().unwrap_or(0);
    let hours = ((last.at_s - first.at_s) / 3600.0).max(1e-9);
    let rss_growth = slope_per_hour(&rss) * hours;
    let mut problems = Vec::new();
    if rss_growth > (first.rss_mib * 0.10).max(8.0) {
        problems.push(format!(
            "RSS grew {rss_growth:.1} MiB over the second half ({:.1} -> {:.1} MiB)",
            first.rss_mib, last.rss_mib
        ));
    }
    // Connections and git's pack files come and go: a spike is not growth, a trend is.
    let fds_growth = slope_per_hour(&fds) * hours;
    if fds_growth > 8.0 {
        problems.push(format!(
            "descriptors grew by {fds_growth:.0} over the second half ({} -> {})",
            first.fds, last.fds
        ));
    }
    let figures = json!({
        "rss_mib": {"start": first.rss_mib, "end": last.rss_mib, "max": rss_max,
                    "trend_mib_per_hour": (slope_per_hour(&rss) * 10.0).round() / 10.0},
        "fds": {"start": first.fds, "end": last.fds, "max": fds_max,
                "trend_per_hour": (slope_per_hour(&fds) * 10.0).round() / 10.0},
        "threads": {"start": first.threads, "end": last.threads},
        "cards_on_board": {"start": first.board, "end": last.board},
    });
    (figures, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(f64) -> f64, fds: impl Fn(f64) -> usize) -> Vec<Sample> {
        (0..120)
            .map(|i| {
                let at_s = f64::from(i) * 30.0;
                Sample {
                    at_s,
                    rss_mib: rss(at_s),
                    fds: fds(at_s),
                    threads: 9,
                    board: 1400,
                }
            })
            .collect()
    }

    #[test]
    fn a_slope_is_per_hour() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i) * 360.0, f64::from(i)))
            .collect();
        assert!((slope_per_hour(&line) - 10.0).abs() < 1e-9);
        assert_eq!(slope_per_hour(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn flat_memory_passes_and_a_leak_or_growing_descriptors_fail() {
        // Warm-up growth in the first half and allocator wobble do not count.
        let flat = samples(
            |t| {
                if t < 1000.0 {
                    t / 20.0
                } else {
                    60.0 + (t / 30.0) % 3.0
                }
            },
            |_| 36,
        );
        assert_eq!(verdict(&flat).1, Vec::<String>::new());
        let leak = samples(|t| 60.0 + t / 60.0, |_| 36);
        assert!(
            verdict(&leak).1[0].starts_with("RSS grew"),
            "{:?}",
            verdict(&leak).1
        );
        let fds = samples(|_| 60.0, |t| 36 + (t / 100.0) as usize);
        assert!(verdict(&fds).1[0].starts_with("descriptors grew"));
        // Seen in a real hour: 35 -> 51 for five samples, then back to 32.
        let spike = samples(
            |_| 60.0,
            |t| {
                if (2400.0..2550.0).contains(&t) {
                    51
                } else {
                    34
                }
            },
        );
        assert_eq!(verdict(&spike).1, Vec::<String>::new());
    }
}
