//! The drop-to-done burst of `pas bench lifecycle`: cards dropped into the inbox, assigned
//! by the daemon, finished by simulated agents, recorded and committed.
//!
//! The agents are one thread of the bench that does what an agent does by the file
//! protocol (as `pas demo`'s agents do): read a card in its folder under `assigned/`, add
//! `result:` (temp file + rename in place), then rename it into `done/`. The figure is the
//! whole loop, drop to done (and to the done state in git): a card's full life through the
//! daemon, twice watched (inbox and done) and twice committed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::{drop_card, scratch, wait_for, BenchArgs, Daemon};
use crate::card::State;
use crate::workspace::Workspace;

/// Drops `n` cards, lets the simulated agents finish them, and times drop to done.
pub(super) fn done_burst(
    n: usize,
    args: &BenchArgs,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<Value> {
    let agents = args.agents.unwrap_or(10);
    let (dir, ws) = scratch(args.dir.as_deref(), agents, n.div_ceil(agents) + 1, args)?;
    let daemon = Daemon::start(&ws.root)?;
    let stop = Arc::new(AtomicBool::new(false));
    let finisher = {
        let (ws, stop) = (Workspace::at(&ws.root), stop.clone());
        std::thread::Builder::new()
            .name("bench-agents".into())
            .spawn(move || finish_loop(&ws, &stop))?
    };
    let inbox = ws.state_dir(State::Inbox);
    let t0 = Instant::now();
    for i in 0..n {
        drop_card(&inbox, &format!("D{i:06}"))?;
    }
    let limit = Duration::from_secs(300);
    let result = wait_for(limit, "every card done", || finished_cards(&ws) >= n);
    let done = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let finished = finisher.join().unwrap_or(0);
    result?;
    if !args.no_git {
        wait_for(limit, "every done card committed", || {
            committed_done(&ws.root) >= n
        })?;
    }
    let committed = t0.elapsed();
    let rejected = count_yaml(&ws.rejected());
    let rss = daemon.peak_rss_mb();
    drop(daemon);
    keep.push(dir);
    eprintln!(
        "burst {n:>6} cards, {agents} agents finishing: done in {:.3} s ({:.0}/s), committed in {:.3} s ({:.0}/s); {rejected} rejected; daemon peak RSS {:.1} MiB",
        done.as_secs_f64(),
        n as f64 / done.as_secs_f64(),
        committed.as_secs_f64(),
        n as f64 / committed.as_secs_f64(),
        rss.unwrap_or(f64::NAN),
    );
    Ok(json!({
        "cards": n,
        "agents": agents,
        "finished_by_agents": finished,
        "to_done_s": done.as_secs_f64(),
        "to_done_committed_s": committed.as_secs_f64(),
        "done_per_s": n as f64 / done.as_secs_f64(),
        "done_committed_per_s": n as f64 / committed.as_secs_f64(),
        "rejected": rejected,
        "daemon_peak_rss_mb": rss,
    }))
}

/// The simulated agents: finish every card that lands in an agent's folder, until told
/// to stop. Returns how many cards they finished.
fn finish_loop(ws: &Workspace, stop: &AtomicBool) -> usize {
    let assigned = ws.state_dir(State::Assigned);
    let done = ws.state_dir(State::Done);
    let mut finished = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut found = 0;
        for agent in std::fs::read_dir(&assigned).into_iter().flatten().flatten() {
            for card in std::fs::read_dir(agent.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = card.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') || !name.ends_with(".yaml") {
                    continue;
                }
                if finish(&card.path(), &done.join(&*name)).is_ok() {
                    finished += 1;
                    found += 1;
                }
            }
        }
        if found == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    finished
}

/// Adds `result:` before pas's block (temp file + rename in place), then moves the card.
fn finish(card: &Path, to: &Path) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(card)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match text.find("\npas:") {
        Some(i) => text.insert_str(i + 1, "result: done by the bench\n"),
        None => text.push_str("result: done by the bench\n"),
    }
    let tmp = card.with_extension("yaml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, card)?;
    std::fs::rename(card, to)
}

/// Cards in `done/` and in `archive/`: the daemon archives finished cards past
/// `archive.keep` while the burst runs, and an archived card was done all the same.
fn finished_cards(ws: &Workspace) -> usize {
    let archived = walkdir::WalkDir::new(ws.work().join("archive"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".yaml"))
        .count();
    count_yaml(&ws.state_dir(State::Done)) + archived
}

fn count_yaml(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && n.ends_with(".yaml")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Number of cards under work/done and work/archive in HEAD's tree.
fn committed_done(root: &Path) -> usize {
    let Ok(repo) = git2::Repository::open(root) else {
        return 0;
    };
    let Ok(tree) = repo.head().and_then(|h| h.peel_to_tree()) else {
        return 0;
    };
    let mut n = 0;
    for dir in ["work/done", "work/archive"] {
        let Some(sub) = tree
            .get_path(Path::new(dir))
            .ok()
            .and_then(|e| repo.find_tree(e.id()).ok())
        else {
            continue;
        };
        let _ = sub.walk(git2::TreeWalkMode::PreOrder, |_, e| {
            if e.kind() == Some(git2::ObjectType::Blob)
                && e.name().is_some_and(|n| n.ends_with(".yaml"))
            {
                n += 1;
            }
            git2::TreeWalkResult::Ok
        });
    }
    n
}
