//! `GET /health` (SPEC section 15): whether the daemon reconciles and its stores accept
//! writes, for systemd, Kubernetes and uptime checks.
//!
//! The answer never waits on the engine or on a file an agent wrote: the engine publishes
//! a timestamp per turn of its loop into a process-wide atomic (one daemon per process,
//! held by the daemon lock, so a global is the whole truth and costs the engine one store),
//! and the other checks probe pas's own stores: the age of git's lock files (read with
//! `lstat`, never opened), a write transaction on the database that waits a bounded time,
//! a small write beside the database and the device's free space, and whether `work/` is
//! still the folder the watcher watches. The checks run on a blocking thread under a
//! deadline, one run at a time, and a result is reused for half a second, so a flood of
//! probes cannot pile up work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::config::HealthConfig;
use crate::workspace::Workspace;

/// Unix milliseconds of the engine loop's last turn; 0 before it first turns.
static ENGINE_TURN_MS: AtomicI64 = AtomicI64::new(0);
/// The inode and device of `work/` when the watch began (0: not watching).
static WATCHED_INODE: AtomicU64 = AtomicU64::new(0);
static WATCHED_DEV: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Called by the engine loop on every turn: the loop is alive.
pub fn engine_turned() {
    ENGINE_TURN_MS.store(now_ms(), Ordering::Relaxed);
}

/// Called once the watch on `work` is set: the folder the watcher follows. A `work/`
/// replaced later (removed and made again) is not watched, which the check reports.
pub fn watching(work: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::symlink_metadata(work) {
        WATCHED_DEV.store(m.dev(), Ordering::Relaxed);
        WATCHED_INODE.store(m.ino(), Ordering::Relaxed);
    }
}

/// One part's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    /// What was seen, in words ("turned 0.3 s ago", ".git/index.lock held for 41 s").
    pub detail: String,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Check {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The whole answer: `status` is `ok` or `fail`; `failing` names the parts that are wrong
/// and `message` says how, one sentence per part.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub checks: BTreeMap<&'static str, Check>,
}

impl Report {
    fn from_checks(checks: BTreeMap<&'static str, Check>) -> Report {
        let failing: Vec<&'static str> = checks
            .iter()
            .filter(|(_, c)| !c.ok)
            .map(|(k, _)| *k)
            .collect();
        let message = failing
            .iter()
            .map(|k| format!("{k}: {}", checks[k].detail))
            .collect::<Vec<_>>()
            .join("; ");
        Report {
            status: if failing.is_empty() { "ok" } else { "fail" },
            failing,
            message,
            checks,
        }
    }

    /// The answer when the checks themselves did not finish in time: a probe is stuck,
    /// which is itself a fault of the part it probes (a hung file system, a lock).
    pub fn timed_out(after: Duration) -> Report {
        let mut checks = BTreeMap::new();
        checks.insert(
            "checks",
            Check::fail(format!(
                "the health checks did not finish within {} s (a store or the disk hangs)",
                after.as_secs()
            )),
        );
        Report::from_checks(checks)
    }

    /// Whether every part is well.
    pub fn is_ok(&self) -> bool {
        self.failing.is_empty()
    }
}

/// Runs every check (blocking: file system and database). `git` says whether pas keeps a
/// git trail here (when not, git is not checked).
pub fn check(ws: &Workspace, cfg: &HealthConfig, git: bool) -> Report {
    let mut checks = BTreeMap::new();
    checks.insert("engine", engine(cfg));
    checks.insert("watcher", watcher(&ws.work()));
    checks.insert(
        "git",
        if git {
            git_locks(&ws.root, cfg)
        } else {
            Check::ok("off (git.enabled: false)")
        },
    );
    checks.insert("database", database(&ws.db_path(), cfg));
    checks.insert("disk", disk(&ws.root, cfg));
    if let Some(seen) = crate::remote::probe::seen() {
        checks.insert("remote", remote(&seen));
    }
    Report::from_checks(checks)
}

/// The shared remote (SPEC section 14): unreachable is a failure to name, since this
/// host makes no new claims until it is back (owned work goes on; finishes queue).
fn remote(seen: &crate::remote::probe::Seen) -> Check {
    let ago = |t: Option<std::time::Instant>| {
        t.map_or("never".to_string(), |t| {
            format!("{:.0} s ago", t.elapsed().as_secs_f64())
        })
    };
    if seen.reachable {
        Check::ok(format!(
            "{} reachable ({} claims on it, answered {})",
            seen.name,
            seen.claims,
            ago(seen.last_ok)
        ))
    } else {
        Check::fail(format!(
            "{} unreachable (last answered {}): no new claims until it is back; {}",
            seen.name,
            ago(seen.last_ok),
            seen.error.as_deref().unwrap_or("no answer")
        ))
    }
}

fn engine(cfg: &HealthConfig) -> Check {
    engine_at(ENGINE_TURN_MS.load(Ordering::Relaxed), now_ms(), cfg)
}

/// The engine's verdict when its loop last turned at `last` (unix ms, 0: never) and it is
/// `now`.
fn engine_at(last: i64, now: i64, cfg: &HealthConfig) -> Check {
    if last == 0 {
        return Check::fail("the engine loop has not started");
    }
    let age = (now - last).max(0) as f64 / 1000.0;
    if age > cfg.engine_stall_s {
        Check::fail(format!(
            "the engine loop has not turned for {age:.0} s (limit {} s): it is stuck",
            cfg.engine_stall_s
        ))
    } else {
        Check::ok(format!("turned {age:.1} s ago"))
    }
}

fn watcher(work: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    let ino = WATCHED_INODE.load(Ordering::Relaxed);
    if ino == 0 {
        return Check::fail("the watcher has not started");
    }
    match std::fs::symlink_metadata(work) {
        Ok(m) if m.ino() == ino && m.dev() == WATCHED_DEV.load(Ordering::Relaxed) => {
            Check::ok("watching work/")
        }
        Ok(_) => Check::fail(
            "work/ was replaced since the watcher started, so changes to it go unseen: \
             restart pas serve",
        ),
        Err(e) => Check::fail(format!("work/ cannot be read ({e}): nothing is watched")),
    }
}

/// The repository's git folder: `.git` in the workspace or a folder above it.
fn git_dir(root: &Path) -> Option<PathBuf> {
    root.ancestors()
        .map(|d| d.join(".git"))
        .find(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
}

fn git_locks(root: &Path, cfg: &HealthConfig) -> Check {
    let Some(dir) = git_dir(root) else {
        return Check::fail("no git repository (git init, or git.enabled: false)");
    };
    let mut locks = vec![dir.join("index.lock"), dir.join("HEAD.lock")];
    // Branch locks: one folder deep is where `refs/heads/<branch>.lock` lives.
    if let Ok(rd) = std::fs::read_dir(dir.join("refs").join("heads")) {
        locks.extend(
            rd.take(1000)
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "lock")),
        );
    }
    let now = std::time::SystemTime::now();
    let mut oldest: Option<(String, f64)> = None;
    for lock in locks {
        let Ok(m) = std::fs::symlink_metadata(&lock) else {
            continue;
        };
        let age = m
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let name = lock
            .strip_prefix(dir.parent().unwrap_or(&dir))
            .unwrap_or(&lock)
            .display()
            .to_string();
        if oldest.as_ref().is_none_or(|(_, a)| age > *a) {
            oldest = Some((name, age));
        }
    }
    match oldest {
        Some((name, age)) if age > cfg.git_lock_s => {
            // pas commits past a held index (only the index waits); a ref lock stops commits.
            let what = if name.ends_with("index.lock") {
                "pas still commits, but cannot update git's index until it is released"
            } else {
                "pas cannot commit until it is released"
            };
            Check::fail(format!(
                "{name} held by another process for {age:.0} s (limit {} s): {what}",
                cfg.git_lock_s
            ))
        }
        Some((name, age)) => Check::ok(format!("{name} held for {age:.0} s")),
        None => Check::ok("no lock held"),
    }
}

fn database(path: &Path, cfg: &HealthConfig) -> Check {
    use rusqlite::{Connection, OpenFlags};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Check::fail("telemetry/pas.db is not a regular file"),
        Err(_) => return Check::fail("telemetry/pas.db is missing"),
    }
    let probe = || -> rusqlite::Result<()> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_millis(cfg.db_wait_ms))?;
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
    };
    match probe() {
        Ok(()) => Check::ok("accepts writes"),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Check::fail(format!(
                "telemetry/pas.db is locked by another process (no write lock within {} ms)",
                cfg.db_wait_ms
            ))
        }
        Err(e) => Check::fail(format!("telemetry/pas.db does not accept writes: {e}")),
    }
}

fn disk(root: &Path, cfg: &HealthConfig) -> Check {
    let free = free_bytes(root);
    let min = cfg.min_free_mb.saturating_mul(1 << 20);
    if let Some(free) = free {
        if free < min.max(1) {
            return Check::fail(format!(
                "the workspace's device is full ({} KiB free, least {} MiB)",
                free / 1024,
                cfg.min_free_mb
            ));
        }
    }
    // A write says more than the free count: a quota, a read-only remount.
    let probe = root.join(".pas").join("health.probe");
    match probe_write(&probe) {
        Ok(()) => Check::ok(match free {
            Some(f) => format!("{} MiB free", f >> 20),
            None => "writable".to_string(),
        }),
        Err(e) => Check::fail(format!("cannot write in .pas/: {e}")),
    }
}

fn free_bytes(root: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(root.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Writes and removes a small file, never through a link nor blocking on a FIFO.
fn probe_write(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let written = f.write_all(&[b'.'; 4096]).and_then(|_| f.sync_data());
    drop(f);
    let _ = std::fs::remove_file(path);
    written
}

/// The HTTP side: one run of the checks at a time, reused for half a second, answered
/// within a deadline whatever a probe does.
pub mod http {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::Report;
    use crate::workspace::Workspace;

    /// How long `/health` waits for its checks.
    const DEADLINE: Duration = Duration::from_secs(5);
    /// How long a result is reused.
    const FRESH: Duration = Duration::from_millis(500);

    static LAST: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>> =
        tokio::sync::Mutex::const_new(None);

    /// `GET /health` for `ws`: 200 with the checks, or 503 naming what is wrong.
    pub async fn answer(ws: Workspace) -> Response {
        let report = {
            let mut last = LAST.lock().await;
            match last.as_ref() {
                Some((at, r)) if at.elapsed() < FRESH => r.clone(),
                _ => {
                    let run = tokio::task::spawn_blocking(move || {
                        let cfg = ws.config().unwrap_or_default();
                        super::check(&ws, &cfg.health, cfg.git.enabled)
                    });
                    let r = match tokio::time::timeout(DEADLINE, run).await {
                        Ok(Ok(r)) => r,
                        _ => Report::timed_out(DEADLINE),
                    };
                    let r = Arc::new(r);
                    *last = Some((Instant::now(), r.clone()));
                    r
                }
            }
        };
        let status = if report.is_ok() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut resp = (status, axum::Json(&*report)).into_response();
        resp.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_loop_that_stops_turning_is_a_stall() {
        let cfg = HealthConfig::default();
        assert!(engine_at(10_000, 10_400, &cfg).ok);
        let stuck = engine_at(10_000, 10_000 + 31_000, &cfg);
        assert!(
            !stuck.ok && stuck.detail.contains("has not turned for 31 s"),
            "{}",
            stuck.detail
        );
        assert!(!engine_at(0, 5, &cfg).ok);
    }

    #[test]
    fn the_report_names_each_failing_part() {
        let mut checks = BTreeMap::new();
        checks.insert("git", Check::fail(".git/index.lock held"));
        checks.insert("disk", Check::ok("9 MiB free"));
        checks.insert("database", Check::fail("locked"));
        let r = Report::from_checks(checks);
        assert_eq!(
            (r.status, r.failing.clone()),
            ("fail", vec!["database", "git"])
        );
        assert_eq!(r.message, "database: locked; git: .git/index.lock held");
        assert!(Report::timed_out(Duration::from_secs(5))
            .message
            .contains("did not finish within 5 s"));
    }
}
