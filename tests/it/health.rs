//! `GET /health` (issue 18, part 1): 200 on both ports while the daemon works, without the
//! token; 503 naming the part that is wrong when a git lock is held past its limit, the
//! database is locked or `work/` is no longer the folder being watched; 200 again once
//! the fault is gone. (The full disk is in `tests/faults/health.rs`: it needs a tmpfs.)

use std::time::Duration;

use crate::support::http;
use crate::support::workspace::{wait_until, Workspace, FAST};

/// Short limits, so the faults show within a test's patience.
fn config() -> String {
    format!("{FAST}health: {{git_lock_s: 1, db_wait_ms: 200}}\n")
}

/// Waits until `/health` at `addr` answers `status`; returns its JSON.
fn wait_health(addr: &str, status: u16) -> serde_json::Value {
    wait_until(
        &format!("/health at {addr} to answer {status}"),
        Duration::from_secs(20),
        || {
            let r = http::send("GET", &format!("http://{addr}/health"), &[], None);
            if r.status == status {
                Ok(r.json())
            } else {
                Err(format!("{} {}", r.status, r.body))
            }
        },
    )
}

#[test]
fn health_answers_ok_on_both_ports_without_the_token() {
    let ws = Workspace::with_config(&config());
    let _d = ws.serve_with(&[("PAS_TOKEN", "t0k3n-health")]);
    let (dash, gw) = ws.addresses();
    for addr in [&dash, &gw] {
        let h = wait_health(addr, 200);
        assert_eq!(h["status"], "ok", "{h}");
        for part in ["engine", "git", "database", "disk", "watcher"] {
            assert_eq!(h["checks"][part]["ok"], true, "{part}: {h}");
        }
        // The token still guards everything else.
        let r = http::send("GET", &format!("http://{addr}/api/status"), &[], None);
        assert_eq!(r.status, 401, "{}", r.body);
    }
}

#[test]
fn a_git_lock_held_past_its_limit_is_a_503_naming_git() {
    let ws = Workspace::with_config(&config());
    let _d = ws.serve_ready();
    let (dash, gw) = ws.addresses();
    wait_health(&dash, 200);
    // Held open, as a running git command holds it (a lock nobody holds is a crash's
    // leftover, which pas clears); a card moving meanwhile makes pas try to commit.
    let lock = ws.path(".git/index.lock");
    let held = std::fs::File::create(&lock).unwrap();
    ws.drop_card("H-1", "title: moves while git is locked\n");
    for addr in [&dash, &gw] {
        let h = wait_health(addr, 503);
        assert_eq!(h["failing"], serde_json::json!(["git"]), "{h}");
        let msg = h["message"].as_str().unwrap();
        assert!(
            msg.contains(".git/index.lock") && msg.contains("held"),
            "{msg}"
        );
        assert!(
            !msg.contains(ws.root.to_str().unwrap()),
            "no absolute path: {msg}"
        );
    }
    drop(held);
    std::fs::remove_file(&lock).unwrap();
    wait_health(&dash, 200);
}

#[test]
fn a_locked_database_is_a_503_naming_the_database() {
    let ws = Workspace::with_config(&config());
    let _d = ws.serve_ready();
    let (dash, _) = ws.addresses();
    wait_health(&dash, 200);
    let db = rusqlite::Connection::open(ws.path("telemetry/pas.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let h = wait_health(&dash, 503);
    assert_eq!(h["failing"], serde_json::json!(["database"]), "{h}");
    assert!(
        h["message"]
            .as_str()
            .unwrap()
            .contains("locked by another process"),
        "{h}"
    );
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    wait_health(&dash, 200);
}

#[test]
fn a_replaced_work_folder_is_a_503_naming_the_watcher() {
    let ws = Workspace::with_config(&config());
    let _d = ws.serve_ready();
    let (dash, _) = ws.addresses();
    wait_health(&dash, 200);
    std::fs::rename(ws.path("work"), ws.path("work.old")).unwrap();
    std::fs::create_dir(ws.path("work")).unwrap();
    let h = wait_health(&dash, 503);
    assert!(
        h["failing"].as_array().unwrap().contains(&"watcher".into()),
        "{h}"
    );
    assert!(
        h["message"]
            .as_str()
            .unwrap()
            .contains("work/ was replaced"),
        "{h}"
    );
}
