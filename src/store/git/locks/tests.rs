//! Stale-lock removal against real locks: files held open, and a real `git commit -a`
//! whose editor keeps it waiting with `index.lock` closed.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::*;

/// Makes `p` exist and look a minute old (past [`STALE_AFTER`]).
fn age(p: &Path) {
    if !p.exists() {
        std::fs::write(p, b"").unwrap();
    }
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

#[test]
fn a_lock_no_process_holds_is_removed_a_held_one_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let store = GitStore::init(d.path()).unwrap();
    let git = store.repo.path().to_path_buf();
    age(&git.join("index.lock"));
    let held = git.join("HEAD.lock");
    age(&held);
    let _open = std::fs::File::open(&held).unwrap();
    let young = git.join("refs/heads/main.lock");
    std::fs::create_dir_all(young.parent().unwrap()).unwrap();
    std::fs::write(&young, b"").unwrap();
    let removed = store.clear_stale_locks();
    assert!(
        young.exists(),
        "a fresh lock may be a git process about to rename it"
    );
    assert_eq!(removed, vec![git.join("index.lock")]);
    assert!(held.exists(), "a lock held open is never removed");
}

/// `git` in `dir`, isolated from the machine's and the user's configuration.
fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"]);
    c
}

/// Starts `git commit -a` in `dir` with an editor that waits until `release` exists, and
/// returns once git has taken `index.lock` (and closed it) for the editor's time.
fn commit_waiting_on_editor(dir: &Path, release: &Path) -> Child {
    let editor = dir.join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho 'a message' > \"$1\"\n",
            release.display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&editor).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&editor, perm).unwrap();
    std::fs::write(dir.join("f.txt"), format!("{:?}\n", Instant::now())).unwrap();
    let child = git(dir)
        .args(["commit", "-a"])
        .env("GIT_EDITOR", &editor)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.join(".git/index.lock");
    let t0 = Instant::now();
    while !(lock.exists() && editor_running(dir)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "git never took index.lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Whether some process runs the editor script of `dir`.
fn editor_running(dir: &Path) -> bool {
    let needle = dir.join("editor.sh");
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|a| Path::new(OsStr::from_bytes(a)) == needle)
        })
    })
}

#[test]
fn a_lock_a_live_git_commit_keeps_closed_is_kept_and_a_killed_ones_removed() {
    let d = tempfile::tempdir().unwrap();
    let store = GitStore::init(d.path()).unwrap();
    let dir = d.path();
    std::fs::write(dir.join("f.txt"), "first\n").unwrap();
    assert!(git(dir).args(["add", "f.txt"]).status().unwrap().success());
    assert!(git(dir)
        .args(["commit", "-qm", "first"])
        .status()
        .unwrap()
        .success());
    let lock = store.repo.path().join("index.lock");

    // A live `git commit -a` waiting on its editor: the lock is closed, and old.
    let release = dir.join("release-1");
    let mut live = commit_waiting_on_editor(dir, &release);
    age(&lock);
    let here = Repo::new(store.repo.path(), store.repo.workdir());
    assert!(
        !scan(&here).open.contains(&lock),
        "git keeps index.lock closed while the editor runs (else this test proves nothing)"
    );
    assert_eq!(store.clear_stale_locks(), Vec::<PathBuf>::new());
    assert!(lock.exists(), "pas removed the lock of a live git commit");
    std::fs::write(&release, b"").unwrap();
    let status = live.wait().unwrap();
    assert!(
        status.success(),
        "the commit whose lock pas kept finishes: {status}"
    );
    assert!(!lock.exists());

    // The same commit killed while its editor waits: the editor lives on, git does not.
    let release = dir.join("release-2");
    let mut killed = commit_waiting_on_editor(dir, &release);
    killed.kill().unwrap();
    // Not yet reaped: a zombie holds nothing.
    let t0 = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{}/stat", killed.id())).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }) {
        assert!(t0.elapsed() < Duration::from_secs(10), "git never died");
        std::thread::sleep(Duration::from_millis(10));
    }
    age(&lock);
    assert_eq!(store.clear_stale_locks(), vec![lock.clone()]);
    assert!(!lock.exists());
    killed.wait().unwrap();
    std::fs::write(&release, b"").unwrap();
}

#[test]
fn git_env_pointing_into_the_repository_counts_as_working_here() {
    let d = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let store = GitStore::init(d.path()).unwrap();
    let here = Repo::new(store.repo.path(), store.repo.workdir());
    assert!(here.holds(&d.path().join("work/x"), None));
    assert!(here.holds(Path::new(".git"), Some(d.path())));
    assert!(!here.holds(elsewhere.path(), None));
    assert!(!here.holds(Path::new("relative"), None));
    // A git run from elsewhere with GIT_DIR pointing here: `git var` would return at
    // once, so a long-lived `git cat-file --batch` waits on its stdin instead.
    let mut child = git(elsewhere.path())
        .env("GIT_DIR", store.repo.path())
        .args(["cat-file", "--batch"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !scan(&here).git_here.iter().any(|g| g.pid == child.id()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a git with GIT_DIR here was not seen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
