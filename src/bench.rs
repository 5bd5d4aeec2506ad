//! `pas bench`: measurements on this machine, against the real binary and real files.
//!
//! `pas bench lifecycle` starts `pas serve` as a child process on a scratch workspace,
//! registers agents, drops cards the way an agent would (temp file + rename), and
//! watches the files and git to time what happens: burst throughput to assigned and to
//! committed, drop-to-assigned latency at a steady rate, `pas status` time, and the
//! daemon's peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use notify::Watcher;
use serde_json::json;

use crate::workspace::Workspace;

/// Which benchmark.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// Card lifecycle: drop -> assigned -> committed, status time, daemon RSS.
    Lifecycle,
}

/// Flags of `pas bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[arg(value_enum)]
    pub which: Which,
    /// Burst sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub cards: Vec<usize>,
    /// Registered agents.
    #[arg(long, default_value_t = 10)]
    pub agents: usize,
    /// Steady rate for the latency run, cards per second.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Length of the steady-rate run, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Runs of `pas status` to time.
    #[arg(long, default_value_t = 10)]
    pub status_runs: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Folder for the scratch workspaces (default: the system's temp folder). They are
    /// all removed at the end of the run, not between runs: on ext4 without a journal,
    /// mass deletions slow the inode allocation of whatever runs next.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the daemon with `git: {enabled: false}` (to see what the audit trail costs).
    #[arg(long)]
    pub no_git: bool,
    /// The daemon's `git.commit_window_ms` (default: pas.yaml's default).
    #[arg(long)]
    pub commit_window_ms: Option<u64>,
}

/// Runs the chosen benchmark and prints its figures.
pub fn run(_ws: &Workspace, args: BenchArgs) -> Result<i32> {
    match args.which {
        Which::Lifecycle => lifecycle(&args),
    }
}

/// A daemon child process, stopped with SIGTERM when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(root: &Path) -> Result<Daemon> {
        let exe = std::env::current_exe().context("cannot find the pas binary")?;
        let child = Command::new(exe)
            .args(["serve", "--root"])
            .arg(root)
            .env("PAS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start pas serve")?;
        let d = Daemon { child };
        // Ready once the start-up commit has landed and the lock is held.
        wait_for(Duration::from_secs(30), "the daemon to start", || {
            crate::cli::daemon_running(&Workspace::at(root))
        })?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(d)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size in MiB (VmHWM).
    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process by pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// A scratch workspace with `agents` registered, each with room for `slots` cards.
fn scratch(
    parent: Option<&Path>,
    agents: usize,
    slots: usize,
    args: &BenchArgs,
) -> Result<(tempfile::TempDir, Workspace)> {
    let builder = tempfile::Builder::new().prefix("pas-bench-").clone();
    let dir = match parent {
        Some(p) => builder.tempdir_in(p)?,
        None => builder.tempdir()?,
    };
    let ws = Workspace::at(dir.path().canonicalize()?);
    let window = args
        .commit_window_ms
        .map(|w| format!(", commit_window_ms: {w}"))
        .unwrap_or_default();
    std::fs::write(
        ws.config_path(),
        format!("git: {{enabled: {}{window}}}\n", !args.no_git),
    )?;
    let report = crate::workspace::init(&ws.root)?;
    let mut git = crate::store::git::GitStore::init(&ws.root)?;
    git.commit_paths(&report.created, "pas: init workspace", "pas")?;
    for i in 0..agents {
        let reg = crate::agent::Registration {
            name: Some(format!("agent-{i}")),
            epoch: 1,
            max_concurrent: Some(slots as u32),
            ..Default::default()
        };
        crate::fsops::write_atomic(
            &ws.registration_path(&format!("agent-{i}")),
            reg.to_yaml().as_bytes(),
            false,
        )?;
        std::fs::create_dir_all(
            ws.state_dir(crate::card::State::Assigned)
                .join(format!("agent-{i}")),
        )?;
    }
    Ok((dir, ws))
}

/// Drops one card the way an agent would: temp file, then rename into the inbox.
fn drop_card(inbox: &Path, id: &str) -> Result<()> {
    let tmp = inbox.join(format!(".{id}.tmp"));
    std::fs::write(&tmp, format!("title: bench card {id}\npriority: medium\n"))?;
    std::fs::rename(&tmp, inbox.join(format!("{id}.yaml")))?;
    Ok(())
}

fn count_assigned(ws: &Workspace) -> usize {
    let dir = ws.state_dir(crate::card::State::Assigned);
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|a| {
                    std::fs::read_dir(a.path())
                        .map(|f| {
                            f.flatten()
                                .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
                                .count()
                        })
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Number of cards under work/assigned in HEAD's tree.
fn committed_assigned(root: &Path) -> usize {
    let Ok(repo) = git2::Repository::open(root) else {
        return 0;
    };
    let Ok(tree) = repo.head().and_then(|h| h.peel_to_tree()) else {
        return 0;
    };
    let Ok(entry) = tree.get_path(Path::new("work/assigned")) else {
        return 0;
    };
    let Ok(sub) = repo.find_tree(entry.id()) else {
        return 0;
    };
    sub.iter()
        .filter_map(|a| repo.find_tree(a.id()).ok())
        .map(|t| {
            t.iter()
                .filter(|e| e.name().is_some_and(|n| n.ends_with(".yaml")))
                .count()
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn lifecycle(args: &BenchArgs) -> Result<i32> {
    let mut results = Vec::new();
    let mut keep = Vec::new(); // scratch workspaces, removed when the run is over
    let noise = machine_noise();
    eprintln!(
        "machine noise (spin loop of fixed work, 20 runs): median {:.2} ms, min {:.2}, max {:.2}",
        noise.1, noise.0, noise.2
    );

    for &n in &args.cards {
        let slots = n.div_ceil(args.agents) + 1;
        let (dir, ws) = scratch(args.dir.as_deref(), args.agents, slots, args)?;
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
            "agents": args.agents,
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
            args.agents,
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
        let v = json!({"bench": "lifecycle", "noise_ms": {"min": noise.0, "median": noise.1, "max": noise.2}, "bursts": results, "steady": steady});
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(0)
}

/// Drop-to-assigned latency at a fixed rate, seen through inotify on `assigned/`.
fn steady_rate(args: &BenchArgs) -> Result<serde_json::Value> {
    let total = (args.rate * args.seconds) as usize;
    let (_dir, ws) = scratch(
        args.dir.as_deref(),
        args.agents,
        total.div_ceil(args.agents) + 1,
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

/// Time of a fixed CPU workload, 20 runs: (min, median, max) in ms. A wide spread means
/// a noisy machine and figures to read with care.
fn machine_noise() -> (f64, f64, f64) {
    let mut runs: Vec<f64> = (0..20)
        .map(|_| {
            let s = Instant::now();
            let mut x: u64 = 1;
            for i in 0..5_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            std::hint::black_box(x);
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[0], percentile(&runs, 0.5), runs[runs.len() - 1])
}
