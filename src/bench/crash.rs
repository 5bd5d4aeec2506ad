//! `pas bench crash`: kill -9 at random instants, restart, and check that nothing was
//! lost, duplicated or left unrecorded.
//!
//! Each round drops `--cards` cards while agents (threads acting as agents would: a
//! `rename` of each card from `assigned/<me>/` to `done/`) complete whatever they are
//! given; at a random instant in the round the daemon gets SIGKILL. The agents carry on
//! while it is down, as real ones would. A new daemon starts; once every card is done it
//! is stopped in order (SIGTERM) and every check runs:
//!
//! - every card dropped so far is in exactly one state folder (none lost, none twice);
//! - `git status` of `work/` is clean (every transition committed) and `git fsck` passes;
//! - SQLite's `integrity_check` is `ok`, and each card's history has exactly as many
//!   transitions as the database holds for it (with `git status` clean, the committed
//!   card holds that same history, so git has every transition too).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{drop_card, scratch, wait_for, BenchArgs, Daemon};
use crate::card::{Card, State};
use crate::workspace::Workspace;

/// Agents completing cards in the bench.
const AGENTS: usize = 8;

/// A seeded xorshift, so a failing round can be replayed with `--seed`.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Agent threads: each moves every card in its folder to `done/`, as `mv` would, and
/// beats every second (an agent that stops beating is deregistered, crash or no crash).
pub(super) fn agents(ws: &Workspace, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..AGENTS)
        .map(|i| {
            let mine = ws.state_dir(State::Assigned).join(format!("agent-{i}"));
            let done = ws.state_dir(State::Done);
            let beats = ws
                .work()
                .join("heartbeats")
                .join(format!("agent-{i}.jsonl"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut last_beat: Option<Instant> = None;
                while !stop.load(Ordering::SeqCst) {
                    if last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        beat(&beats);
                        last_beat = Some(Instant::now());
                    }
                    for e in std::fs::read_dir(&mine).into_iter().flatten().flatten() {
                        let name = e.file_name();
                        if name.to_string_lossy().ends_with(".yaml") {
                            // Losing a race with the daemon (a take-back) is fine.
                            let _ = std::fs::rename(e.path(), done.join(&name));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect()
}

/// Appends one heartbeat line, as an agent would (one `O_APPEND` write).
fn beat(path: &Path) {
    use std::io::Write;
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let line = format!("{{\"ts\":\"{ts}\",\"status\":\"running\"}}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Whether a folder `places` names holds finished-well cards (`done`, or the archive).
fn is_done(dir: &str) -> bool {
    dir == "done" || dir.starts_with("archive/")
}

/// Where each card is: id -> the state folders it was found in.
fn places(ws: &Workspace) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let work = ws.work();
    // The archive's cards lie four folders down (archive/YYYY/MM/DD/); they count as done.
    for e in walkdir::WalkDir::new(&work).min_depth(2).max_depth(5) {
        let Ok(e) = e else { continue };
        let rel = e.path().strip_prefix(&work).unwrap_or(e.path());
        let top = rel
            .iter()
            .next()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let state_dir = matches!(top, "inbox" | "assigned" | "done" | "failed" | "archive");
        if !state_dir || !e.file_type().is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".yaml")
            .filter(|_| !name.starts_with('.'))
        {
            let dir = rel
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.entry(id.to_string()).or_default().push(dir);
        }
    }
    out
}

pub(super) fn git(root: &Path, args: &[&str]) -> Result<(bool, String)> {
    // No optional locks: a `git status` beside the daemon must not take its index lock.
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .with_context(|| format!("cannot run git {}", args.join(" ")))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// Every check of one round; the first failure is the error.
fn check(ws: &Workspace, dropped: &[String]) -> Result<()> {
    let found = places(ws);
    for id in dropped {
        match found.get(id).map(Vec::as_slice) {
            None | Some([]) => bail!("card {id} is lost"),
            Some([_]) => {}
            Some(many) => bail!("card {id} is in {} places: {many:?}", many.len()),
        }
    }
    if found.len() != dropped.len() {
        bail!("{} cards on disk, {} dropped", found.len(), dropped.len());
    }
    let (_, status) = git(&ws.root, &["status", "--porcelain", "--", "work"])?;
    let dirty: Vec<&str> = status
        .lines()
        .filter(|l| !l.contains("work/heartbeats/") && !l.contains("work/rejected/"))
        .collect();
    if !dirty.is_empty() {
        bail!("uncommitted in work/: {:?}", &dirty[..dirty.len().min(5)]);
    }
    let (ok, fsck) = git(&ws.root, &["fsck", "--no-progress"])?;
    if !ok {
        bail!("git fsck failed: {fsck}");
    }
    let conn = crate::store::db::open_read_only(&ws.db_path())?
        .context("the telemetry database is missing")?;
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        bail!("SQLite integrity_check: {integrity}");
    }
    let counts = crate::store::db::known_transition_counts(&conn)?;
    let mut total = 0u64;
    for (id, dirs) in &found {
        let path = ws.work().join(&dirs[0]).join(format!("{id}.yaml"));
        let text = std::fs::read_to_string(&path)?;
        let card =
            Card::parse(id, &text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let history = card.spec.pas.history.len() as u32;
        let rows = counts.get(id).copied().unwrap_or(0);
        if history != rows {
            bail!("card {id}: {history} transitions in its history, {rows} in the database");
        }
        total += u64::from(rows);
    }
    if total == 0 {
        bail!("no transitions recorded at all");
    }
    Ok(())
}

/// Runs the crash bench and prints one line per round.
pub fn crash(args: &BenchArgs) -> Result<i32> {
    let rounds = args.rounds;
    let per_round = args.cards.first().copied().unwrap_or(5000);
    let (dir, ws) = scratch(args.dir.as_deref(), AGENTS, 10_000, args)?;
    let mut dice = Dice(args.seed.max(1));
    let mut dropped: Vec<String> = Vec::new();
    let mut report = Vec::new();
    let mut failed = false;
    let mut daemon = Daemon::start(&ws.root)?;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = agents(&ws, stop.clone());
    let inbox = ws.state_dir(State::Inbox);
    println!("pas bench crash: {rounds} rounds of {per_round} cards, {AGENTS} agents, kill -9 at a random instant");
    for round in 1..=rounds {
        let kill_after = Duration::from_millis(50 + dice.below(2500));
        let started = Instant::now();
        let mut killed = false;
        for i in 0..per_round {
            let id = format!("R{round}-{i:05}");
            drop_card(&inbox, &id)?;
            dropped.push(id);
            if !killed && started.elapsed() >= kill_after {
                daemon.kill();
                killed = true;
            }
        }
        if !killed {
            std::thread::sleep(kill_after.saturating_sub(started.elapsed()));
            daemon.kill();
        }
        let killed_at = started.elapsed();
        std::thread::sleep(Duration::from_millis(200)); // agents go on meanwhile
        let restart = Instant::now();
        daemon = Daemon::start(&ws.root)?;
        let quiet = wait_for(Duration::from_secs(600), "every card done", || {
            let p = places(&ws);
            p.len() == dropped.len() && p.values().all(|d| d.len() == 1 && is_done(&d[0]))
        });
        let recovered = restart.elapsed();
        // An orderly stop (SIGTERM) commits and writes what is pending; then check, and
        // start again for the next round.
        drop(daemon);
        let verdict = quiet.and_then(|_| check(&ws, &dropped));
        daemon = Daemon::start(&ws.root)?;
        let ok = verdict.is_ok();
        failed |= !ok;
        println!(
            "  round {round:>2}: killed after {:>5} ms, {} cards in all, all done {:>6.2} s after restart: {}",
            killed_at.as_millis(),
            dropped.len(),
            recovered.as_secs_f64(),
            match &verdict {
                Ok(()) => "every check passed".to_string(),
                Err(e) => format!("FAILED: {e:#}"),
            }
        );
        report.push(json!({
            "round": round,
            "killed_after_ms": killed_at.as_millis() as u64,
            "cards": dropped.len(),
            "recovered_s": recovered.as_secs_f64(),
            "ok": ok,
            "error": verdict.err().map(|e| format!("{e:#}")),
        }));
        if !ok {
            println!(
                "  the workspace is kept for inspection: {}",
                ws.root.display()
            );
            let _ = dir.keep();
            stop.store(true, Ordering::SeqCst);
            return Ok(1);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
    drop(daemon);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"rounds": report}))?
        );
    }
    Ok(if failed { 1 } else { 0 })
}
