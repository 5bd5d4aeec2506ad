//! `pas bench lifecycle`: burst throughput to assigned and to committed, the same to done
//! with simulated agents finishing the cards (`done.rs`), drop-to-assigned latency at a
//! steady rate, `pas status` time, and the daemon's peak RSS.

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use notify::Watcher;
use serde_json::json;

use super::{
    committed_assigned, count_assigned, drop_card, machine_noise, percentile, scratch, wait_for,
    BenchArgs, Daemon,
};

pub fn lifecycle(args: &BenchArgs) -> Result<i32> {
    let agents = args.agents.unwrap_or(10);
    let mut results = Vec::new();
    let mut keep = Vec::new(); // scratch workspaces, removed when the run is over
    let noise = machine_noise();
    eprintln!(
        "machine noise (spin loop of fixed work, 20 runs): median {:.2} ms, min {:.2}, max {:.2}",
        noise.1, noise.0, noise.2
    );

    for n in args.bursts() {
        let slots = n.div_ceil(agents) + 1;
        let (dir, ws) = scratch(args.dir.as_deref(), agents, slots, args)?;
        let daemon = Daemon::start(&ws.root)?;
        let inbox = ws.state_dir(crate::card::State::Inbox);
        let t0 = Instant::now();
        for i in 0..n {
            drop_card(&inbox, &format!("B{i:06}"))?;
        }
        let dropped = t0.elapsed();
        let limit = Duration::from_secs(120);
        wait_for(limit, "every card assigned", || count_assigned(&ws) >= n)?;
        let assigned = t0.elapsed();
        if !args.no_git {
            wait_for(limit, "every assignment committed", || {
                committed_assigned(&ws.root) >= n
            })?;
        }
        let committed = t0.elapsed();
        let rss = daemon.peak_rss_mb();

        let mut status_ms: Vec<f64> = Vec::new();
        let exe = std::env::current_exe()?;
        for _ in 0..args.status_runs {
            let s = Instant::now();
            let out = Command::new(&exe)
                .args(["status", "--json", "--root"])
                .arg(&ws.root)
                .output()?;
            status_ms.push(s.elapsed().as_secs_f64() * 1000.0);
            if !out.status.success() {
                bail!(
                    "pas status failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        status_ms.sort_by(f64::total_cmp);
        drop(daemon);
        keep.push(dir);
        let r = json!({
            "cards": n,
            "agents": agents,
            "drop_s": dropped.as_secs_f64(),
            "to_assigned_s": assigned.as_secs_f64(),
            "to_committed_s": committed.as_secs_f64(),
            "assigned_per_s": n as f64 / assigned.as_secs_f64(),
            "committed_per_s": n as f64 / committed.as_secs_f64(),
            "status_ms_median": percentile(&status_ms, 0.5),
            "status_ms_min": status_ms.first(),
            "status_ms_max": status_ms.last(),
            "daemon_peak_rss_mb": rss,
        });
        eprintln!(
            "burst {n:>6} cards, {} agents: assigned in {:.3} s ({:.0}/s), committed in {:.3} s ({:.0}/s); pas status median {:.1} ms (min {:.1}, max {:.1}); daemon peak RSS {:.1} MiB",
            agents,
            assigned.as_secs_f64(),
            n as f64 / assigned.as_secs_f64(),
            committed.as_secs_f64(),
            n as f64 / committed.as_secs_f64(),
            percentile(&status_ms, 0.5),
            status_ms.first().copied().unwrap_or(f64::NAN),
            status_ms.last().copied().unwrap_or(f64::NAN),
            rss.unwrap_or(f64::NAN)
        );
        results.push(r);
    }

    let mut done = Vec::new();
    for n in args.bursts() {
        done.push(super::done::done_burst(n, args, &mut keep)?);
    }

    let steady = steady_rate(args)?;
    drop(keep);
    eprintln!(
        "steady {} cards/s for {} s ({} cards): drop-to-assigned p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; daemon peak RSS {:.1} MiB",
        args.rate,
        args.seconds,
        steady["cards"],
        steady["p50_ms"].as_f64().unwrap_or(f64::NAN),
        steady["p99_ms"].as_f64().unwrap_or(f64::NAN),
        steady["max_ms"].as_f64().unwrap_or(f64::NAN),
        steady["daemon_peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
    );
    if args.json {
        let v = json!({"bench": "lifecycle", "noise_ms": {"min": noise.0, "median": noise.1, "max": noise.2}, "git": !args.no_git, "fsync": args.fsync, "bursts": results, "done_bursts": done, "steady": steady});
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(0)
}

/// Drop-to-assigned latency at a fixed rate, seen through inotify on `assigned/`.
fn steady_rate(args: &BenchArgs) -> Result<serde_json::Value> {
    let agents = args.agents.unwrap_or(10);
    let total = (args.rate * args.seconds) as usize;
    let (_dir, ws) = scratch(
        args.dir.as_deref(),
        agents,
        total.div_ceil(agents) + 1,
        args,
    )?;
    let daemon = Daemon::start(&ws.root)?;
    let (tx, rx) = mpsc::channel::<(PathBuf, Instant)>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let now = Instant::now();
            for p in ev.paths {
                let _ = tx.send((p, now));
            }
        }
    })?;
    watcher.watch(
        &ws.state_dir(crate::card::State::Assigned),
        notify::RecursiveMode::Recursive,
    )?;
    let inbox = ws.state_dir(crate::card::State::Inbox);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let start = Instant::now();
    let mut dropped_at: Vec<Instant> = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        drop_card(&inbox, &format!("S{i:06}"))?;
        dropped_at.push(Instant::now());
    }
    let mut seen: Vec<Option<Instant>> = vec![None; total];
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count < total && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((p, t)) => {
                let Some(i) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix('S'))
                    .and_then(|n| n.strip_suffix(".yaml"))
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                if i < total && seen[i].is_none() {
                    seen[i] = Some(t);
                    count += 1;
                }
            }
            Err(_) => continue,
        }
    }
    let rss = daemon.peak_rss_mb();
    drop(daemon);
    let mut lat: Vec<f64> = seen
        .iter()
        .zip(&dropped_at)
        .filter_map(|(s, d)| s.map(|s| s.saturating_duration_since(*d).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    Ok(json!({
        "rate_per_s": args.rate,
        "cards": total,
        "seen_assigned": lat.len(),
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last(),
        "daemon_peak_rss_mb": rss,
    }))
}
