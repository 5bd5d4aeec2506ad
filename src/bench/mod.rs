//! `pas bench`: measurements on this machine, against the real binary and real files.
//!
//! `pas bench lifecycle` starts `pas serve` as a child process on a scratch workspace,
//! registers agents, drops cards the way an agent would (temp file + rename), and
//! watches the files and git to time what happens: burst throughput to assigned and to
//! committed, drop to done with simulated agents finishing the cards, drop-to-assigned
//! latency at a steady rate, `pas status` time, and the daemon's peak RSS (git on or
//! off with `--no-git`, fsync with `--fsync`).
//!
//! `pas bench gateway` times the LLM gateway against a fast fake upstream (see
//! `gateway.rs`).
//!
//! `pas bench agents` registers a thousand agents that beat every second, and measures
//! what liveness costs the daemon and how quickly it reacts.
//!
//! `pas bench soak` holds a steady load of cards, beats, gateway calls and a dashboard
//! client for an hour and reports whether the daemon's RSS or descriptors grow.
//!
//! `pas bench hostile` plants a tree of hostile files of every kind and checks that the
//! daemon stays alive and assigning, loses nothing and touches nothing outside.
//!
//! `pas bench dashboard` connects a thousand WebSocket clients to the dashboard and times
//! each card from its rename into the inbox to its event at every client.
//!
//! `pas bench history` writes a history of `--commits` commits and times `pas log` of its
//! oldest and newest card (the old walk, one pass, the index), `pas reindex` and the job
//! page (see `history.rs`).
//!
//! `pas bench hosts` shares one board between hosts through a git remote and checks from
//! the remote alone that no card is owned or done twice (see `hosts.rs`).
//!
//! `pas bench runners` runs `--cards` cards through `--agents` concurrent agent processes
//! and times pas's own share of each run (see `runners.rs`).

mod agents;
mod board;
mod cdp;
mod crash;
mod dashboard;
mod done;
mod gateway;
mod history;
mod hostile;
mod hosts;
mod lifecycle;
mod runners;
mod soak;
mod trace_paint;
mod traces;
mod year;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::workspace::Workspace;

/// Which benchmark.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// Card lifecycle: drop -> assigned -> committed, status time, daemon RSS.
    Lifecycle,
    /// Liveness at scale: agents beating, the daemon's CPU and RSS, beat-to-state lag,
    /// and the time from the third missed interval to the cards back in the inbox.
    Agents,
    /// Kill -9 at random instants while cards flow; after each restart, check that no
    /// card is lost or duplicated and git and the database agree with the files.
    Crash,
    /// LLM gateway overhead: latency through pas less latency direct to a fast upstream,
    /// at fixed rates and at the most the machine holds, receipts on.
    Gateway,
    /// Dashboard fan-out: WebSocket clients on `/ws` while cards arrive at a steady rate;
    /// rename-to-client latency, messages lost, daemon RSS.
    Dashboard,
    /// The kanban at scale in headless chromium: `--cards` cards (default 10,000), then
    /// `--drops` cards dropped one by one; drop-to-DOM time and card nodes replaced.
    Board,
    /// An hour (`--minutes`) of steady cards, beats, gateway calls and a dashboard client:
    /// RSS, descriptors and threads sampled, nothing may grow or be lost.
    Soak,
    /// `--files` hostile files of every kind in every folder pas reads, against the real
    /// daemon: it must stay alive and assigning, lose nothing and touch nothing outside.
    Hostile,
    /// A history of `--commits` commits: `pas log` of the oldest and newest card by the
    /// old walk, by one pass and from the index; `pas reindex`; the job page.
    History,
    /// Tracing's cost: gateway latency with `traces.capture: full` beside `off` at
    /// `--rates`, every call's span checked; then agents' JSONL ingest at `--rate` lines/s.
    Traces,
    /// Many hosts, one board through a git remote: claim contention (`--agents` hosts,
    /// `--cards` first value), 4 hosts working off `--cards` second value, and faults.
    Hosts,
    /// Agents pas runs (`run:`): `--cards` cards (100) through `--agents` (10) concurrent
    /// short-lived processes; spawn to first byte, exit to card moved, memory per agent.
    Runners,
}

/// Flags of `pas bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[arg(value_enum)]
    pub which: Which,
    /// Burst sizes (comma-separated).
    /// (lifecycle default 1000,10000; `crash`: the first is the cards per round; `history`:
    /// a year-old workspace of this many cards and commits instead of `--commits`).
    #[arg(long, value_delimiter = ',')]
    pub cards: Vec<usize>,
    /// Registered agents (lifecycle default 10; `agents` default 1000).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Heartbeat interval of the agents in `pas bench agents`, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Rounds of `pas bench crash` (its cards per round: the first of `--cards`).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Seed of `pas bench crash`'s kill instants (the same seed kills at the same times).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Request rates of `pas bench gateway` (comma-separated, requests per second).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub rates: Vec<u32>,
    /// Steady rate for the latency run, cards per second.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Length of the steady-rate run (or of the measured window of `agents`), seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Runs of `pas status` to time.
    #[arg(long, default_value_t = 10)]
    pub status_runs: usize,
    /// WebSocket clients of `pas bench dashboard`.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Cards (so `job.created` events) per second in `pas bench dashboard`.
    #[arg(long, default_value_t = 1000)]
    pub events_per_s: u32,
    /// Cards dropped one at a time in `pas bench board`.
    #[arg(long, default_value_t = 40)]
    pub drops: usize,
    /// `board`: another build of the dashboard's assets (a folder with `templates/` and
    /// `static/`), measured in alternating rounds against the built-in one.
    #[arg(long)]
    pub old_assets: Option<PathBuf>,
    /// Length of `pas bench soak`, minutes.
    #[arg(long, default_value_t = 60)]
    pub minutes: u32,
    /// Cards dropped per second in `pas bench soak`.
    #[arg(long, default_value_t = 20)]
    pub cards_per_s: u32,
    /// Gateway calls per second in `pas bench soak`.
    #[arg(long, default_value_t = 50)]
    pub calls_per_s: u32,
    /// Hostile files planted by `pas bench hostile` (the kinds in turn; `--seed` picks
    /// the folders).
    #[arg(long, default_value_t = 1000)]
    pub files: usize,
    /// Commits of the history `pas bench history` writes.
    #[arg(long, default_value_t = 20_000)]
    pub commits: usize,
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
    /// Run the daemon with `fsync: true` (what power-loss safety costs).
    #[arg(long)]
    pub fsync: bool,
    /// Repeat each measurement this many times and report the median, min and max
    /// (`gateway`: the runs of each rate are interleaved across the targets, so drift in
    /// the machine's load touches all of them alike).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// `gateway`: another OpenAI-compatible proxy's base URL (e.g.
    /// `http://127.0.0.1:4000/v1`), measured with the same generator and load, against
    /// the same fake upstream (see `--upstream-port`). Model name `canned`.
    #[arg(long)]
    pub peer: Option<String>,
    /// `gateway`: the name the peer is reported under.
    #[arg(long, default_value = "peer")]
    pub peer_name: String,
    /// `gateway`: the fake upstream's port on 127.0.0.1 (default: any free port), so a
    /// peer proxy can be configured to call it before the bench starts.
    #[arg(long)]
    pub upstream_port: Option<u16>,
    /// `gateway`: skip the closed-loop "most requests per second" run.
    #[arg(long)]
    pub no_max: bool,
}

impl BenchArgs {
    /// The burst sizes: `--cards`, else 1,000 and 10,000.
    fn bursts(&self) -> Vec<usize> {
        if self.cards.is_empty() {
            vec![1000, 10_000]
        } else {
            self.cards.clone()
        }
    }
}

/// Runs the chosen benchmark and prints its figures.
pub fn run(_ws: &Workspace, args: BenchArgs) -> Result<i32> {
    match args.which {
        Which::Lifecycle => lifecycle::lifecycle(&args),
        Which::Agents => agents::agents(&args),
        Which::Gateway => gateway::gateway(&args),
        Which::Crash => crash::crash(&args),
        Which::Dashboard => dashboard::dashboard(&args),
        Which::Board => board::board(&args),
        Which::Soak => soak::soak(&args),
        Which::Hostile => hostile::hostile(&args),
        Which::History => match args.cards.first() {
            Some(&n) => year::year(&args, n),
            None => history::history(&args),
        },
        Which::Traces => traces::traces(&args),
        Which::Runners => runners::runners(&args),
        Which::Hosts => hosts::hosts(&args),
    }
}

/// A daemon child process, stopped with SIGTERM when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(root: &Path) -> Result<Daemon> {
        Daemon::start_logging(root, "warn")
    }

    /// A daemon that logs errors only (the agents bench makes agents go down on purpose).
    fn start_quiet(root: &Path) -> Result<Daemon> {
        Daemon::start_logging(root, "error")
    }

    fn start_logging(root: &Path, level: &str) -> Result<Daemon> {
        let d = Daemon::spawn(root, level)?;
        // Ready once the start-up commit has landed and the lock is held.
        wait_for(Duration::from_secs(30), "the daemon to start", || {
            crate::workspace::lock::daemon_running(&Workspace::at(root))
        })?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(d)
    }

    /// Starts `pas serve` on `root` and returns at once.
    fn spawn(root: &Path, level: &str) -> Result<Daemon> {
        let exe = std::env::current_exe().context("cannot find the pas binary")?;
        let child = Command::new(exe)
            .args(["serve", "--root"])
            .arg(root)
            .env("PAS_LOG", level)
            .env("PAS_DASHBOARD_BIND", "127.0.0.1:0")
            .env("PAS_GATEWAY_BIND", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start pas serve")?;
        Ok(Daemon { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size in MiB (VmHWM).
    fn peak_rss_mb(&self) -> Option<f64> {
        vm_kib(self.pid(), "VmHWM:").map(|kb| kb / 1024.0)
    }
}

impl Daemon {
    /// SIGKILL, and reaps it: a crash at whatever instant this is.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Not once it has been reaped: its pid may belong to someone else by now.
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child process, not yet reaped.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let _ = self.child.wait();
        }
    }
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`, `RssAnon:`).
fn vm_kib(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
        format!(
            "git: {{enabled: {}{window}}}\nfsync: {}\n",
            !args.no_git, args.fsync
        ),
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

pub(super) fn count_assigned(ws: &Workspace) -> usize {
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
