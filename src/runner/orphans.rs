//! Records of the processes pas started, so none runs unowned after pas dies.
//!
//! Each run writes `telemetry/runs/<id>.child.json` when it starts (pid, process group,
//! the process's start time from `/proc`, the card, and the supervising pas process with
//! its own start time) and removes it once the run is over. On start a supervisor sweeps
//! the records: a record whose owner is gone (pas was killed) names an orphan; if that
//! process group still runs it is ended (TERM, then KILL), and the card, still in
//! `assigned/<agent>/`, is run again from the start by the new supervisor (ending and
//! restarting rather than adopting: pas cannot re-attach to the pipes of a process it did
//! not start). A record whose owner lives belongs to another `pas run`, and is left alone.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::workspace::Workspace;

use super::process::{self, stat};

/// One running child, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub job: String,
    pub agent: String,
    pub pid: i32,
    pub pgid: i32,
    /// The child's start time (clock ticks after boot, `/proc/<pid>/stat` field 22).
    pub start: u64,
    pub owner_pid: i32,
    pub owner_start: u64,
    /// The run's git worktree, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<PathBuf>,
}

/// The record file of card `job` under `dir` (`telemetry/runs/`).
pub fn record_path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{job}.child.json"))
}

/// This process's pid and start time: the owner written into records.
pub fn me() -> (i32, u64) {
    let pid = std::process::id() as i32;
    (pid, stat(pid).map_or(0, |s| s.start))
}

/// Writes the record of a run that just started.
pub fn write(dir: &Path, rec: &ChildRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    crate::fsops::write_atomic(&record_path(dir, &rec.job), &text, false)
}

/// Removes the record of a run that is over.
pub fn remove(dir: &Path, job: &str) {
    let _ = std::fs::remove_file(record_path(dir, job));
}

/// Whether the process that wrote a record still runs (and is the same process).
fn owner_alive(rec: &ChildRecord) -> bool {
    let (pid, _) = me();
    rec.owner_pid != pid && stat(rec.owner_pid).is_some_and(|s| s.start == rec.owner_start)
}

/// Whether group `rec.pgid` is still the one pas started: its leader is the recorded
/// process, or the leader is gone and members remain (Linux does not reuse a pid while a
/// group of that id exists).
fn group_is_ours(rec: &ChildRecord) -> bool {
    match stat(rec.pid) {
        Some(s) => s.start == rec.start && s.pgrp == rec.pgid,
        None => process::group_alive(rec.pgid),
    }
}

/// Ends the orphans recorded under `dir` whose agent `wanted` accepts, and returns their
/// records (the caller tidies their worktrees). Records of live owners are left alone.
pub fn sweep(dir: &Path, wanted: impl Fn(&str) -> bool, grace: Duration) -> Vec<ChildRecord> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ended = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if !path.to_string_lossy().ends_with(".child.json") {
            continue;
        }
        let rec: ChildRecord =
            match crate::intake::read_text(&path, crate::intake::FileKind::Marker)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                Some(r) => r,
                None => {
                    tracing::warn!(file = %path.display(), "unreadable run record removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
        if !wanted(&rec.agent) || owner_alive(&rec) {
            continue;
        }
        if group_is_ours(&rec) {
            tracing::warn!(job = %rec.job, agent = %rec.agent, pid = rec.pid,
                "a run outlived the pas that started it: ending its process group");
            process::end_group(rec.pgid, grace);
        }
        let _ = std::fs::remove_file(&path);
        ended.push(rec);
    }
    ended
}

/// Holds `telemetry/runs/<agent>.lock`: one supervisor per agent per workspace.
pub struct AgentLock {
    _file: std::fs::File,
}

pub fn lock_agent(ws: &Workspace, name: &str) -> Result<AgentLock> {
    use std::io::{Read, Write};
    let dir = super::runs_dir(ws);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = (&file).take(32).read_to_string(&mut holder);
        bail!(
            "agent {name} is already run by another pas (pid {})",
            holder.trim()
        );
    }
    let _ = file.set_len(0);
    let _ = file.write_all(std::process::id().to_string().as_bytes());
    Ok(AgentLock { _file: file })
}
