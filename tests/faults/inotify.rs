//! The inotify limits: with `fs.inotify.max_user_watches` (or `max_user_instances`) used
//! up, `pas serve` must refuse to start with an error that names the sysctl, its value and
//! the command that raises it; raised again, it starts and works.
//!
//! The limits are machine-wide: each test lowers one for as short a time as it can (the
//! daemon's start-up) and puts it back in a guard, even when the test fails.

use std::time::Duration;

use crate::fixture::Workspace;
use crate::{serial, unavailable};

/// A sysctl under `/proc/sys/fs/inotify/` set to a value, put back when dropped.
struct Lowered {
    path: String,
    old: String,
}

impl Lowered {
    /// Sets `fs.inotify.<key>` to `value`; `None` (after [`unavailable`]) when this
    /// machine does not let us.
    fn set(key: &str, value: &str) -> Option<Lowered> {
        let path = format!("/proc/sys/fs/inotify/{key}");
        let old = match std::fs::read_to_string(&path) {
            Ok(v) => v.trim().to_string(),
            Err(e) => {
                unavailable(&format!("cannot read {path}: {e}"));
                return None;
            }
        };
        // Writing the value it has proves we may, before anything is changed.
        if let Err(e) = std::fs::write(&path, &old) {
            unavailable(&format!("cannot write {path}: {e}"));
            return None;
        }
        std::fs::write(&path, value).unwrap();
        Some(Lowered { path, old })
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.old) {
            eprintln!("COULD NOT RESTORE {} to {}: {e}", self.path, self.old);
        }
    }
}

/// Starts `pas serve` with `fs.inotify.<key>` at 0: it must exit at once, naming the limit.
/// Then, with the limit put back, it starts and assigns a card.
fn refused_then_works(key: &str) {
    let _serial = serial();
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    let Some(lowered) = Lowered::set(key, "0") else {
        return;
    };
    let mut d = ws.serve();
    let status = d.wait_exit(Duration::from_secs(30));
    drop(lowered);
    let log = d.log_text();
    let status = status.unwrap_or_else(|| panic!("pas serve kept running with {key} = 0:\n{log}"));
    assert_eq!(status.code(), Some(1), "exit status; log:\n{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line:\n{log}"));
    for words in [
        format!("fs.inotify.{key} = 0"),
        format!("sudo sysctl fs.inotify.{key}="),
        "/etc/sysctl.d/".to_string(),
        ws.root.join("work").display().to_string(),
    ] {
        assert!(error.contains(&words), "the error names {words:?}: {error}");
    }
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("pas serve with fs.inotify.{key} = 0 said: {error}");

    // Raised again: pas starts and does its work.
    let _d = ws.serve_ready();
    ws.drop_card("after", "title: after the limit was raised\n");
    ws.wait_assigned("after", "a");
}

#[test]
fn the_inotify_watch_limit_is_named_with_how_to_raise_it() {
    refused_then_works("max_user_watches");
}

#[test]
fn the_inotify_instance_limit_is_named_with_how_to_raise_it() {
    refused_then_works("max_user_instances");
}
