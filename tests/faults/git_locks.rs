//! git locks held by another process: `.git/index.lock` (a `git add` or `git commit` at
//! work) and the branch's ref lock. A lock a live process holds is never removed (only
//! a crash's leftover is, see locks.rs); pas says which lock holds it back, keeps moving
//! cards, and catches up once the lock is released.

use std::fs;
use std::time::Duration;

use crate::fixture::{history, holds_for, Workspace};
use crate::{one_place, serial, stores_intact, wait_log};

/// Takes the lock file at `path` as git does (created exclusively, so never a lock pas
/// holds at that instant) and keeps it open, as a running git command does.
fn hold_lock(path: &std::path::Path) -> fs::File {
    crate::fixture::wait_until("the git lock free to take", Duration::from_secs(10), || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| e.to_string())
    })
}

/// Drops `ids` and waits until each is assigned to `a`.
fn drop_and_assign(ws: &Workspace, ids: &[String]) {
    for id in ids {
        ws.drop_card(id, &format!("title: {id}\n"));
    }
    for id in ids {
        ws.wait_state(id, "assigned/a");
    }
}

/// Every transition in each card's history is a line of some commit.
fn every_transition_committed(ws: &Workspace, ids: &[String]) {
    for id in ids {
        for t in history(&ws.card(id)) {
            ws.wait_commit_line(&format!("pas: {id} {t}"));
        }
    }
}

#[test]
fn a_held_index_lock_delays_only_the_index_and_clears_when_released() {
    let _serial = serial();
    let ws = Workspace::new();
    ws.register("a", &[], 10);
    let d = ws.serve_ready();
    let lock = ws.path(".git/index.lock");
    let held = hold_lock(&lock);

    let ids: Vec<String> = (0..4).map(|i| format!("ix-{i}")).collect();
    drop_and_assign(&ws, &ids);
    ws.pas_ok(&["done", "ix-0", "--result", "finished under the lock"]);
    ws.wait_state("ix-0", "done");
    // Commits are built from HEAD, not the index: they land while the index is locked.
    every_transition_committed(&ws, &ids);
    let line = wait_log(
        &d,
        &[
            "git index not updated",
            "index.lock is held by another process",
        ],
        Duration::from_secs(10),
    );
    assert!(line.contains("git status` lags"), "{line}");
    // Only the index lags, so git status shows what it has not taken in.
    assert!(
        !ws.git_status(&["work"]).is_empty(),
        "the index could not have been updated"
    );
    // A lock a live process holds is never removed, however old.
    holds_for(
        "the held index.lock in place",
        Duration::from_millis(2600),
        || match lock.exists() {
            true => Ok(()),
            false => Err("pas removed a lock a live process holds".into()),
        },
    );
    for id in &ids {
        one_place(&ws, id);
    }

    // The git command finishes: its lock goes, and pas brings the index in line.
    drop(held);
    fs::remove_file(&lock).unwrap();
    ws.wait_work_clean("git status -- work clean once index.lock was released");
    wait_log(&d, &["git index updated"], Duration::from_secs(5));
    stores_intact(&ws);
}

#[test]
fn a_held_branch_lock_holds_commits_back_and_they_all_land_when_released() {
    let _serial = serial();
    let ws = Workspace::new();
    ws.register("a", &[], 10);
    let d = ws.serve_ready();
    let branch = ws.git(&["symbolic-ref", "HEAD"]).trim().to_string();
    let lock = ws.path(&format!(".git/{branch}.lock"));
    let held = hold_lock(&lock);
    let before = ws.head();

    // Cards keep moving: the board does not wait for git.
    let ids: Vec<String> = (0..4).map(|i| format!("ref-{i}")).collect();
    drop_and_assign(&ws, &ids);
    ws.pas_ok(&["done", "ref-0"]);
    ws.wait_state("ref-0", "done");
    let line = wait_log(
        &d,
        &[
            "git commit failed",
            &format!("{branch}.lock is held by another process"),
        ],
        Duration::from_secs(10),
    );
    assert!(line.contains("retries until it is released"), "{line}");
    assert_eq!(
        ws.head(),
        before,
        "nothing can be committed while the branch is locked"
    );
    for id in &ids {
        one_place(&ws, id);
    }

    drop(held);
    fs::remove_file(&lock).unwrap();
    every_transition_committed(&ws, &ids);
    ws.wait_work_clean("git status -- work clean once the branch lock was released");
    wait_log(
        &d,
        &["git commit made after the fault cleared"],
        Duration::from_secs(5),
    );
    stores_intact(&ws);
}
