//! `pas bench runners`: pas's own overhead on the agent processes it runs (SPEC section
//! 16). A scratch workspace with one `run:` agent of `--agents` slots (default 10) whose
//! program prints a line, sleeps 200 ms and prints another; `--cards` cards (default 100)
//! dropped at once; the real daemon (a child process) assigns them. The supervisor runs in
//! this process (the daemon's own supervisor for the agent finds it held and stands
//! aside), so every run's figures are taken where they happen: spawn to the process's
//! first byte of output, and its exit to its card renamed into `done/`. Memory: this
//! process's resident set while the slots are full, less before, per running agent (pas's
//! share: threads, pipes, buffers), beside the agents' own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{percentile, vm_kib, BenchArgs, Daemon};
use crate::runner::{Options, RunStat};

/// Runs the bench and prints its figures.
pub fn runners(args: &BenchArgs) -> Result<i32> {
    let cards = args.cards.first().copied().unwrap_or(100);
    let slots = args.agents.unwrap_or(10).max(1);
    let (_dir, ws) = super::scratch(args.dir.as_deref(), 0, 0, args)?;
    std::fs::write(
        ws.agents_dir().join("bench-runner.md"),
        format!(
            "---\nname: bench-runner\nheartbeat_interval_s: 1\nrun:\n  command: [\"/bin/sh\", \"-c\", \"echo started {{{{ card.id }}}}; sleep 0.2; echo done\"]\n  concurrency: {slots}\n---\nBench agent.\n"
        ),
    )?;
    let agent = crate::runner::load(&ws, "bench-runner")?;
    let stats: Arc<Mutex<Vec<RunStat>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = Options {
        gateway: "http://127.0.0.1:9".into(),
        poll: Duration::from_millis(20),
        stop: stop.clone(),
        stats: Some(stats.clone()),
    };
    let rss_before = vm_kib(std::process::id(), "VmRSS:").unwrap_or(0.0);
    let sup_ws = ws.clone();
    let supervisor = std::thread::spawn(move || crate::runner::supervise(&sup_ws, agent, &opts));
    // The agent registers before the daemon looks; the daemon's supervisor finds the agent
    // held by this one and stands aside.
    super::wait_for(Duration::from_secs(10), "the registration", || {
        ws.registration_path("bench-runner").exists()
    })?;
    let _daemon = Daemon::spawn(&ws.root, "off")?;
    super::wait_for(Duration::from_secs(30), "the daemon to start", || {
        crate::workspace::lock::daemon_running(&ws)
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let inbox = ws.state_dir(crate::card::State::Inbox);
    let start = Instant::now();
    for i in 0..cards {
        super::drop_card(&inbox, &format!("RUN-{i:05}"))?;
    }
    let done = ws.state_dir(crate::card::State::Done);
    let mut rss_full = 0.0f64;
    let mut agents_rss = Vec::new();
    super::wait_for(Duration::from_secs(600), "every card done", || {
        rss_full = rss_full.max(vm_kib(std::process::id(), "VmRSS:").unwrap_or(0.0));
        if let Ok(s) = stats.lock() {
            agents_rss.extend(s.iter().filter_map(|r| r.rss_kib));
        }
        std::fs::read_dir(&done).map_or(0, |rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("RUN-"))
                .count()
        }) >= cards
    })?;
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    match supervisor.join() {
        Ok(r) => r?,
        Err(_) => bail!("the supervisor panicked"),
    }
    let runs = stats.lock().map(|s| s.clone()).unwrap_or_default();
    let mut first: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.first_byte)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let mut moved: Vec<f64> = runs
        .iter()
        .map(|r| r.exit_to_moved.as_secs_f64() * 1000.0)
        .collect();
    first.sort_by(f64::total_cmp);
    moved.sort_by(f64::total_cmp);
    let mut own: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.rss_kib)
        .map(|k| k as f64)
        .collect();
    own.sort_by(f64::total_cmp);
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let report = json!({
        "cards": cards,
        "slots": slots,
        "runs": runs.len(),
        "wall_s": r2(wall.as_secs_f64()),
        "cards_per_s": r2(cards as f64 / wall.as_secs_f64()),
        "ideal_wall_s": r2((cards as f64 / slots as f64).ceil() * 0.2),
        "spawn_to_first_byte_ms": {"p50": r2(percentile(&first, 0.5)), "p99": r2(percentile(&first, 0.99)), "max": r2(first.last().copied().unwrap_or(f64::NAN))},
        "exit_to_card_moved_ms": {"p50": r2(percentile(&moved, 0.5)), "p99": r2(percentile(&moved, 0.99)), "max": r2(moved.last().copied().unwrap_or(f64::NAN))},
        "pas_rss_kib_per_running_agent": r2((rss_full - rss_before).max(0.0) / slots as f64),
        "agent_process_rss_kib_p50": r2(percentile(&own, 0.5)),
    });
    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    Ok(if runs.len() >= cards { 0 } else { 1 })
}

fn print_report(r: &Value) {
    println!(
        "pas bench runners: {} cards through {} concurrent agent processes ({} runs) in {} s ({} cards/s; 200 ms of work each, so {} s at best)",
        r["cards"], r["slots"], r["runs"], r["wall_s"], r["cards_per_s"], r["ideal_wall_s"]
    );
    let f = &r["spawn_to_first_byte_ms"];
    let m = &r["exit_to_card_moved_ms"];
    println!(
        "  spawn to first byte: p50 {} ms, p99 {} ms, max {} ms",
        f["p50"], f["p99"], f["max"]
    );
    println!(
        "  exit to card moved:  p50 {} ms, p99 {} ms, max {} ms",
        m["p50"], m["p99"], m["max"]
    );
    println!(
        "  pas's memory per running agent: {} KiB (each agent process itself: {} KiB)",
        r["pas_rss_kib_per_running_agent"], r["agent_process_rss_kib_p50"]
    );
}
