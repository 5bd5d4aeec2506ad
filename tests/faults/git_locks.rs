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

/// Starts a user's `git commit -a` in the workspace whose editor waits until `release`
/// exists; returns once git holds `index.lock`, closed, for the editor's time.
fn user_commit_waiting_on_editor(ws: &Workspace, release: &std::path::Path) -> std::process::Child {
    let editor = ws.root.join(".git/test-editor.sh");
    fs::write(
        &editor,
        format!(
            "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho 'the user commits' > \"$1\"\n",
            release.display()
        ),
    )
    .unwrap();
    let mut perm = fs::metadata(&editor).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&editor, perm).unwrap();
    fs::write(ws.path("notes.txt"), format!("{release:?}\n")).unwrap();
    let child = std::process::Command::new("git")
        .args(["-c", "user.name=user", "-c", "user.email=user@example.com"])
        .args(["commit", "-a"])
        .env("GIT_EDITOR", &editor)
        .current_dir(&ws.root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = ws.path(".git/index.lock");
    crate::fixture::wait_until(
        "git commit to take index.lock",
        Duration::from_secs(10),
        || match lock.exists() {
            true => Ok(()),
            false => Err("not yet".to_string()),
        },
    );
    child
}

#[test]
fn a_live_git_commit_keeps_its_closed_index_lock_and_a_killed_ones_is_cleared() {
    let _serial = serial();
    let ws = Workspace::new();
    ws.register("a", &[], 10);
    fs::write(ws.path("notes.txt"), "the user's notes\n").unwrap();
    ws.git(&["add", "notes.txt"]);
    ws.git(&["commit", "-qm", "the user's notes"]);
    let d = ws.serve_ready();
    let lock = ws.path(".git/index.lock");

    // A user's `git commit -a` waits on its editor: index.lock is there, open by nobody.
    let release = ws.root.join(".git/test-release-1");
    let mut user = user_commit_waiting_on_editor(&ws, &release);
    let ids: Vec<String> = (0..3).map(|i| format!("gc-{i}")).collect();
    drop_and_assign(&ws, &ids);
    wait_log(
        &d,
        &[
            "git index not updated",
            "index.lock is held by another process",
        ],
        Duration::from_secs(10),
    );
    // A retry after the lock passed the age at which a lock nobody has open used to be
    // removed: pas keeps it because the git that took it lives, and says so.
    wait_log(
        &d,
        &["git locks kept", "git process"],
        Duration::from_secs(15),
    );
    holds_for(
        "the live git commit's index.lock in place",
        Duration::from_millis(1000),
        || match lock.exists() {
            true => Ok(()),
            false => Err("pas removed the index.lock of a live git commit".into()),
        },
    );
    for id in &ids {
        one_place(&ws, id);
    }
    fs::write(&release, b"").unwrap();
    user.wait().unwrap();
    ws.wait_work_clean("git status -- work clean once the user's commit ended");

    // The same commit killed while its editor waits: its lock is a leftover, removed.
    let release = ws.root.join(".git/test-release-2");
    let mut killed = user_commit_waiting_on_editor(&ws, &release);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let more: Vec<String> = (0..2).map(|i| format!("gk-{i}")).collect();
    drop_and_assign(&ws, &more);
    wait_log(
        &d,
        &["removed a stale git lock", "index.lock"],
        Duration::from_secs(15),
    );
    ws.wait_work_clean("git status -- work clean once the killed commit's lock was cleared");
    fs::write(&release, b"").unwrap();
    every_transition_committed(&ws, &more);
    stores_intact(&ws);
}
