//! Fault tests of `pas` (issue 6): a full disk, the inotify limits, git locks held by
//! another process, a locked telemetry database, an upstream LLM that resets. Each test
//! injects the fault into a real workspace with a real daemon, checks that pas says what is
//! wrong (the daemon's log, the CLI's error), that every card stays in exactly one state
//! folder with nothing lost, and that pas catches up once the fault is cleared.
//!
//! A binary of its own because some faults change machine-wide state (the inotify sysctls,
//! mounts) and must not meet the `it` suite's daemons; cargo runs test binaries one after
//! another. Within it, every test holds [`serial`]. Faults this machine does not let a test
//! inject (not root, no tmpfs) are skipped with a message, unless `PAS_REQUIRE_FAULTS=1`
//! (CI), where they fail.
//!
//! The `it` suite's helpers are shared: `tests/it/support/` (workspaces, the daemon
//! process, git and the database, HTTP).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[allow(dead_code)]
#[path = "../it/support/mod.rs"]
mod support;
use support::{daemon, http, workspace as fixture};

mod db_lock;
mod disk_full;
mod git_locks;
mod health;
mod inotify;
mod upstream;

use daemon::Daemon;
use fixture::{history, wait_until, Workspace};

/// One fault at a time: some change machine-wide state, and the others time a fault in
/// seconds, which a loaded machine would stretch.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the fault tests' lock (a test that failed before does not poison it for the rest).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fault this machine does not let us inject: the test says why and passes, unless
/// `PAS_REQUIRE_FAULTS=1`, where it fails.
pub fn unavailable(why: &str) {
    if std::env::var("PAS_REQUIRE_FAULTS").as_deref() == Ok("1") {
        panic!("cannot inject the fault: {why} (PAS_REQUIRE_FAULTS=1 requires it)");
    }
    eprintln!("SKIPPED: cannot inject the fault: {why} (set PAS_REQUIRE_FAULTS=1 to fail instead)");
}

/// Waits until the daemon's log has a line containing every one of `words`; returns it.
pub fn wait_log(d: &Daemon, words: &[&str], timeout: Duration) -> String {
    wait_until(&format!("a log line with {words:?}"), timeout, || {
        let text = d.log_text();
        text.lines()
            .find(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_string)
            .ok_or_else(|| format!("{} lines", text.lines().count()))
    })
}

/// Where card `id` is, insisting on exactly one state folder. A card between two folders
/// (held in staging for a moment) is looked at again; two folders at once fail the test.
pub fn one_place(ws: &Workspace, id: &str) -> String {
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = ws.places_of(id);
        if seen.len() == 1 {
            return seen.remove(0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("card {id} is in {seen:?}, not in exactly one state folder");
}

/// With the daemon stopped: every card of `ids` is in exactly one state folder, nothing is
/// left in staging, and the database holds one transition row per history entry.
pub fn consistent_at_rest(ws: &Workspace, ids: &[String]) {
    for id in ids {
        let places = ws.places_of(id);
        assert_eq!(places.len(), 1, "{id} is in {places:?}");
    }
    let staged = crate::fixture::visible_names(&ws.path(".pas/staging"));
    assert!(staged.is_empty(), "cards left in .pas/staging: {staged:?}");
    rows_match_history(ws, ids);
}

/// The database has one transition row per history entry of each card in `ids`.
pub fn rows_match_history(ws: &Workspace, ids: &[String]) {
    for id in ids {
        let entries = history(&ws.card(id)).len() as i64;
        let sql = format!("SELECT count(*) FROM transitions WHERE job_id = '{id}'");
        ws.wait_db_count(&sql, entries);
    }
}

/// `git fsck` passes and SQLite finds its file intact.
pub fn stores_intact(ws: &Workspace) {
    ws.git(&["fsck", "--no-progress"]);
    let check = ws.db_query("PRAGMA integrity_check", |r| r.get::<_, String>(0));
    assert_eq!(check, ["ok"], "telemetry database integrity");
}
