//! Stale git lock files. git (and libgit2) write `index.lock` or `<ref>.lock`, keep it open
//! while writing, then rename it into place; a process killed in between (a `kill -9` of
//! pas itself) leaves the lock behind, and every later index or ref update fails. A lock
//! that no process holds open, and that is older than a couple of seconds (git closes its
//! lock a moment before renaming it), is stale: pas removes it, saying so, at start-up and
//! when a lock blocks a retry.

use std::path::PathBuf;

use super::GitStore;

/// A lock younger than this may belong to a git process between closing and renaming it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl GitStore {
    /// Removes lock files under `.git` that no process has open. Returns what it removed.
    pub fn clear_stale_locks(&self) -> Vec<PathBuf> {
        let git_dir = self.repo.path().to_path_buf();
        let mut candidates = vec![git_dir.join("index.lock"), git_dir.join("HEAD.lock")];
        let heads = git_dir.join("refs").join("heads");
        if let Ok(rd) = std::fs::read_dir(&heads) {
            candidates.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "lock")),
            );
        }
        let old = |p: &PathBuf| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STALE_AFTER)
        };
        let present: Vec<PathBuf> = candidates
            .into_iter()
            .filter(|p| p.is_file() && old(p))
            .collect();
        if present.is_empty() {
            return Vec::new();
        }
        let open = open_files();
        let mut removed = Vec::new();
        for lock in present {
            if open.contains(&lock) {
                continue; // a live git process is writing it
            }
            if std::fs::remove_file(&lock).is_ok() {
                tracing::warn!(lock = %lock.display(), "removed a stale git lock no process held (left by a crash)");
                removed.push(lock);
            }
        }
        removed
    }
}

/// Every file some process on this machine holds open (as far as /proc lets us see).
fn open_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let fds = p.path().join("fd");
        if let Ok(rd) = std::fs::read_dir(&fds) {
            out.extend(
                rd.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_no_process_holds_is_removed_a_held_one_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let store = GitStore::init(d.path()).unwrap();
        let git = store.repo.path().to_path_buf();
        let aged = |p: &std::path::Path| {
            std::fs::write(p, b"").unwrap();
            let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(past)
                .unwrap();
        };
        aged(&git.join("index.lock"));
        let held = git.join("HEAD.lock");
        aged(&held);
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
}
