//! Keeping the repository healthy: loose objects and packs stay bounded, and the size of
//! `.git` and how fast it grows are measured for `pas status --json` and `/metrics`.
//!
//! Every commit pas makes writes its blob and the trees of the folders it changed as loose
//! objects (a card moved into a 20,000-card `done/` rewrites that folder's tree, some
//! 800 KB), so `.git` grows by whole trees per commit until they are packed, where
//! successive versions of a tree are stored as small deltas. The [`Upkeep`] thread looks
//! at `.git/objects` every few dozen commits (a directory listing, no git call) and, when
//! the loose objects are too many or weigh more than half the packs (so `.git` stays under
//! about twice its repacked size), runs `git repack -d -l --geometric=2`: loose objects go
//! into a new pack and small packs are rolled up into bigger ones so that each pack holds
//! at least twice the objects of the next smaller one, which keeps their number
//! logarithmic and the work of each repack proportional to what is new (git maintenance's
//! "incremental repack", without a multi-pack index). Should packs still exceed the
//! configured count, one `git repack -a -d -l` makes a single pack.
//!
//! The git CLI (installed wherever pas runs) does the packing, as a child process at the
//! lowest CPU priority (nice 19) and in the idle I/O class, with one pack thread. It never
//! takes the index lock or a ref lock, so pas keeps committing while it runs: a repack packs
//! only objects that exist when it starts, and deletes a loose object only once a pack
//! holds it. When it is done the git worker refreshes libgit2's list of packs before its
//! next commit. On shutdown a running repack is stopped (SIGTERM; git removes its
//! temporary pack, and the loose objects it had not yet packed are still there).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection};
use serde_json::{json, Value};

use crate::config::MaintenanceConfig;

/// When the upkeep thread first looks (start-up has other work), and at most how long it
/// waits between looks while commits are being made.
const FIRST_LOOK: Duration = Duration::from_secs(10);
const LOOK_EVERY: Duration = Duration::from_secs(60);
/// Loose objects weighing less than this never call for a repack on their own.
const LOOSE_FLOOR: u64 = 1 << 20;
/// Samples are kept this long.
const KEEP_SAMPLES_DAYS: i64 = 7;

/// What `.git/objects` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepoSize {
    /// Loose object files, and their bytes.
    pub loose_objects: u64,
    pub loose_bytes: u64,
    /// Pack files, and the bytes of everything in `objects/pack` (packs, indexes).
    pub packs: u64,
    pub pack_bytes: u64,
}

impl RepoSize {
    /// Bytes in `objects/`.
    pub fn bytes(&self) -> u64 {
        self.loose_bytes + self.pack_bytes
    }
}

/// Counts `objects/`: the 256 fan-out folders of loose objects, and `objects/pack`.
pub fn measure(git_dir: &Path) -> RepoSize {
    let objects = git_dir.join("objects");
    let mut size = RepoSize::default();
    let Ok(dirs) = std::fs::read_dir(&objects) else {
        return size;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name();
        let name = name.to_string_lossy();
        let fanout = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !fanout && name != "pack" {
            continue;
        }
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if fanout {
                size.loose_objects += 1;
                size.loose_bytes += meta.len();
            } else {
                size.pack_bytes += meta.len();
                if f.file_name().to_string_lossy().ends_with(".pack") {
                    size.packs += 1;
                }
            }
        }
    }
    size
}

/// Whether `size` calls for a repack under `policy`.
fn over(policy: &MaintenanceConfig, size: &RepoSize) -> Option<&'static str> {
    if size.loose_objects > policy.max_loose_objects {
        Some("loose objects over the limit")
    } else if size.loose_bytes > LOOSE_FLOOR.max(size.pack_bytes / 2) {
        Some("loose objects weigh more than half the packs")
    } else if size.packs > u64::from(policy.max_packs) {
        Some("packs over the limit")
    } else {
        None
    }
}

/// The upkeep thread's handle, held by the git worker: told of each commit, it says when
/// a repack has changed the packs.
pub(super) struct Upkeep {
    tx: Option<Sender<u32>>,
    stop: Arc<AtomicBool>,
    repacked: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upkeep {
    /// Start the upkeep thread for the repository at `git_dir`; samples go to the database
    /// at `db` when given. `None` when maintenance is off or the thread cannot start.
    pub(super) fn spawn(
        git_dir: PathBuf,
        db: Option<PathBuf>,
        policy: MaintenanceConfig,
    ) -> Option<Upkeep> {
        if !policy.enabled {
            return None;
        }
        let (tx, rx) = mpsc::channel::<u32>();
        let stop = Arc::new(AtomicBool::new(false));
        let repacked = Arc::new(AtomicBool::new(false));
        let mut task = Task {
            git_dir,
            db,
            conn: None,
            policy,
            stop: stop.clone(),
            repacked: repacked.clone(),
            git_missing: false,
        };
        let thread = std::thread::Builder::new()
            .name("pas-upkeep".into())
            .spawn(move || {
                crate::store::background_priority();
                let mut since = 0u64;
                let mut wait = FIRST_LOOK;
                let mut last = Instant::now();
                loop {
                    match rx.recv_timeout(wait) {
                        Ok(n) => since += u64::from(n),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if task.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let first = wait == FIRST_LOOK && last.elapsed() >= FIRST_LOOK;
                    let due = since >= u64::from(task.policy.check_every_commits.max(1))
                        || (since > 0 && last.elapsed() >= LOOK_EVERY)
                        || first;
                    if due {
                        task.look();
                        since = 0;
                        last = Instant::now();
                        wait = LOOK_EVERY;
                    }
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "cannot start the repository upkeep"))
            .ok()?;
        Some(Upkeep {
            tx: Some(tx),
            stop,
            repacked,
            thread: Some(thread),
        })
    }

    /// A commit was made.
    pub(super) fn committed(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(1);
        }
    }

    /// Whether a repack finished since the last call (libgit2 should look at the packs).
    pub(super) fn take_repacked(&self) -> bool {
        self.repacked.swap(false, Ordering::SeqCst)
    }
}

impl Drop for Upkeep {
    /// Stops the thread, and a repack it is running.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("repository upkeep thread panicked");
            }
        }
    }
}

/// The upkeep thread's state.
struct Task {
    git_dir: PathBuf,
    db: Option<PathBuf>,
    conn: Option<Connection>,
    policy: MaintenanceConfig,
    stop: Arc<AtomicBool>,
    repacked: Arc<AtomicBool>,
    git_missing: bool,
}

impl Task {
    /// Measure, record, and repack when the policy says so.
    fn look(&mut self) {
        let before = measure(&self.git_dir);
        let Some(why) = over(&self.policy, &before).filter(|_| !self.git_missing) else {
            self.sample(&before, "sample");
            return;
        };
        self.sample(&before, "before_repack");
        let started = Instant::now();
        let mut ok = self.repack(&["--geometric=2"], why);
        if ok && measure(&self.git_dir).packs > u64::from(self.policy.max_packs) {
            ok = self.repack(&["-a"], "packs still over the limit");
        }
        let after = measure(&self.git_dir);
        self.sample(&after, "after_repack");
        if ok {
            self.repacked.store(true, Ordering::SeqCst);
            tracing::info!(
                why,
                loose_objects = %format!("{} -> {}", before.loose_objects, after.loose_objects),
                packs = %format!("{} -> {}", before.packs, after.packs),
                bytes = %format!("{} -> {}", before.bytes(), after.bytes()),
                took_ms = started.elapsed().as_millis() as u64,
                "repository repacked"
            );
        }
    }

    /// Runs `git repack -d -l -n -q EXTRA` at idle priority; true when it succeeded.
    fn repack(&mut self, extra: &[&str], why: &str) -> bool {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.git_dir)
            .args(["-c", "pack.threads=1", "-c", "gc.auto=0"])
            .args(["repack", "-d", "-l", "-n", "-q"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        ] {
            cmd.env_remove(var);
        }
        lowest_priority(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::NotFound {
                    self.git_missing = true;
                }
                tracing::warn!(error = %e, why,
                    "cannot run git repack (is git installed?); loose objects pile up");
                return false;
            }
        };
        let mut stopped_at: Option<Instant> = None;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for git repack");
                    break None;
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                match stopped_at {
                    None => {
                        // SIGTERM first: git removes its temporary pack.
                        // SAFETY: kill on our own child's pid, which it has not reaped yet.
                        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                        stopped_at = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > Duration::from_secs(2) => {
                        let _ = child.kill();
                    }
                    Some(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        match status {
            Some(s) if s.success() => true,
            Some(s) if stopped_at.is_some() => {
                tracing::info!(status = %s, "git repack stopped for shutdown");
                false
            }
            Some(s) => {
                tracing::warn!(status = %s, stderr = %err.trim(), why, "git repack failed");
                false
            }
            None => false,
        }
    }

    /// Records a sample (best effort: the figures are for reports, not for pas's work).
    fn sample(&mut self, size: &RepoSize, event: &str) {
        let Some(db) = &self.db else { return };
        if self.conn.is_none() {
            match crate::store::db::open(db) {
                Ok(conn) => {
                    let _ = conn.busy_timeout(Duration::from_millis(500));
                    self.conn = Some(conn);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot record the repository's size");
                    return;
                }
            }
        }
        let Some(conn) = &self.conn else { return };
        let now = Utc::now();
        let commits = super::hindex::read_state(conn)
            .ok()
            .flatten()
            .map(|s| s.commits as i64);
        let cutoff = now - TimeDelta::days(KEEP_SAMPLES_DAYS);
        let written = conn
            .execute(
                "INSERT INTO repo_samples (ts, commits, loose_objects, loose_bytes, packs,
                 pack_bytes, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    crate::store::db::ts_text(&now),
                    commits,
                    size.loose_objects as i64,
                    size.loose_bytes as i64,
                    size.packs as i64,
                    size.pack_bytes as i64,
                    event
                ],
            )
            .and_then(|_| {
                conn.execute(
                    "DELETE FROM repo_samples WHERE ts < ?1",
                    [crate::store::db::ts_text(&cutoff)],
                )
            });
        if let Err(e) = written {
            tracing::debug!(error = %e, "cannot record the repository's size");
            self.conn = None;
        }
    }
}

/// nice 19 and the idle I/O class for the child.
fn lowest_priority(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only makes two
    // system calls, which are async-signal-safe; their failure is ignored (best effort).
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            #[cfg(target_os = "linux")]
            {
                const IOPRIO_WHO_PROCESS: libc::c_long = 1;
                const IOPRIO_CLASS_IDLE: libc::c_long = 3;
                libc::syscall(
                    libc::SYS_ioprio_set,
                    IOPRIO_WHO_PROCESS,
                    0,
                    IOPRIO_CLASS_IDLE << 13,
                );
            }
            Ok(())
        });
    }
}

/// One stored sample.
#[derive(Debug, Clone)]
struct Sample {
    ts: DateTime<Utc>,
    commits: Option<i64>,
    loose_bytes: i64,
    bytes: i64,
    event: String,
}

fn samples_since(conn: &Connection, since: DateTime<Utc>) -> rusqlite::Result<Vec<Sample>> {
    let mut stmt = conn.prepare(
        "SELECT ts, commits, loose_bytes, loose_bytes + pack_bytes, event FROM repo_samples
         WHERE ts >= ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([crate::store::db::ts_text(&since)], |r| {
        let ts: String = r.get(0)?;
        Ok(Sample {
            ts: DateTime::parse_from_rfc3339(&ts)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            commits: r.get(1)?,
            loose_bytes: r.get(2)?,
            bytes: r.get(3)?,
            event: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The `repo` object of `pas status --json` (and the figures of `/metrics`): the size of
/// `.git/objects` now, the history index's reach, and the growth the daemon's samples of
/// the last hour show (`null` until they span a minute).
pub fn report(git_dir: &Path, db: &Path, now: DateTime<Utc>) -> Value {
    let size = measure(git_dir);
    let conn = crate::store::db::open_read_only(db).ok().flatten();
    let index = conn
        .as_ref()
        .and_then(|c| super::hindex::read_state(c).ok().flatten());
    let samples = conn
        .as_ref()
        .and_then(|c| samples_since(c, now - TimeDelta::hours(1)).ok())
        .unwrap_or_default();
    let growth = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if (b.ts - a.ts).num_seconds() >= 60 => {
            let secs = (b.ts - a.ts).num_seconds() as f64;
            let per_commit = match (a.commits, b.commits) {
                (Some(x), Some(y)) if y > x => {
                    json!(((b.bytes - a.bytes) as f64 / (y - x) as f64).round())
                }
                _ => Value::Null,
            };
            json!({
                "window_s": secs as u64,
                "bytes_per_hour": ((b.bytes - a.bytes) as f64 * 3600.0 / secs).round(),
                "bytes_per_commit": per_commit,
            })
        }
        _ => Value::Null,
    };
    // What each commit writes before packing: loose bytes added per commit since the
    // last repack (or the first sample of the hour).
    let since_repack = samples
        .iter()
        .rposition(|s| s.event == "after_repack")
        .map_or(samples.first(), |i| samples.get(i));
    let written = match (since_repack, samples.last()) {
        (Some(a), Some(b)) => match (a.commits, b.commits) {
            (Some(x), Some(y)) if y > x => {
                json!(((b.loose_bytes - a.loose_bytes) as f64 / (y - x) as f64).round())
            }
            _ => Value::Null,
        },
        _ => Value::Null,
    };
    let last_repack = conn.as_ref().and_then(|c| {
        c.query_row(
            "SELECT ts FROM repo_samples WHERE event = 'after_repack' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
    });
    json!({
        "git_dir": git_dir.display().to_string(),
        "bytes": size.bytes(),
        "loose": {"objects": size.loose_objects, "bytes": size.loose_bytes},
        "packs": {"count": size.packs, "bytes": size.pack_bytes},
        "commits": index.map(|s| s.commits),
        "index_head": index.map(|s| s.head.to_string()),
        "growth": growth,
        "loose_bytes_per_commit": written,
        "last_repack": last_repack,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn repack_bounds_loose_objects_and_keeps_commits_readable() {
        let (dir, mut store) = setup();
        let root = dir.path();
        for i in 0..40 {
            let card = write(root, &format!("work/inbox/J-{i}.yaml"), "t\n");
            store
                .commit_paths(&[card], &format!("pas: J-{i} new"), "pas")
                .unwrap();
        }
        let git_dir = store.git_dir().to_path_buf();
        let before = measure(&git_dir);
        assert!(before.loose_objects >= 120, "{before:?}");
        let policy = MaintenanceConfig {
            max_loose_objects: 50,
            ..Default::default()
        };
        assert!(over(&policy, &before).is_some());
        let mut task = Task {
            git_dir: git_dir.clone(),
            db: Some(root.join("telemetry/pas.db")),
            conn: None,
            policy,
            stop: Arc::default(),
            repacked: Arc::default(),
            git_missing: false,
        };
        task.look();
        let after = measure(&git_dir);
        assert_eq!(after.loose_objects, 0, "{after:?}");
        assert_eq!(after.packs, 1);
        assert!(task.repacked.load(Ordering::SeqCst));
        // The store (after a refresh) still reads and commits.
        store.refresh_odb();
        let card = write(root, "work/inbox/J-99.yaml", "t\n");
        store.commit_paths(&[card], "pas: J-99 new", "pas").unwrap();
        assert_eq!(store.history_of("J-3").unwrap().len(), 1);
        let report = report(&git_dir, &root.join("telemetry/pas.db"), Utc::now());
        assert_eq!(report["packs"]["count"], 1);
        assert!(report["last_repack"].is_string(), "{report}");
    }
}
