//! Stale git lock files. git (and libgit2) write `index.lock` or `<ref>.lock`, then rename
//! it into place; a process killed in between (a `kill -9` of pas itself, or of a user's
//! git) leaves the lock behind, and every later index or ref update fails. pas removes such
//! a lock, saying so, at start-up and when a lock blocks a retry, but only when no git
//! process can hold it.
//!
//! "Nobody has the file open" is not enough: `git commit -a` (and `commit -i`/`-o`, `git
//! rebase`, `git merge` with an editor) writes `index.lock`, closes it, and keeps it, not
//! open by anyone, while the hooks and the editor run, for as long as the user takes to
//! write the message. Removing it then lets the commit's final rename fail or overwrite
//! an index pas has since written. So a lock is stale only when all of these hold:
//!
//! 1. no process has it open (as far as `/proc/*/fd` shows);
//! 2. it is older than [`STALE_AFTER`] (git closes a lock a moment before renaming it);
//! 3. no live git process works in this repository. A git process is one whose name
//!    (`/proc/PID/comm`) is `git` or `git-*` (the CLI and its helpers, whatever execs
//!    them: hooks and editors are its children, and the git that waits for them is
//!    alive). It works in this repository when its working directory is inside the work
//!    tree or the git directory (`git -C` changes directory first), or its environment's
//!    `GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE` or `GIT_COMMON_DIR` points inside them.
//!    A git process pas may not inspect (another user's, without root) is counted as
//!    working here: pas would rather keep a stale lock (and say so) than break a live one.
//!    A zombie (killed, not yet reaped) is dead and holds nothing.
//!
//! A lock left by a killed git is removed even while its editor lives on (the editor is
//! not git, and no git waits for it any more).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::GitStore;

/// A lock younger than this may belong to a git process between closing and renaming it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl GitStore {
    /// Removes lock files under `.git` that no git process can hold. Returns what it
    /// removed.
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
        let here = Repo::new(&git_dir, self.repo.workdir());
        let procs = scan(&here);
        if let Some(git) = procs.git_here.first() {
            tracing::info!(
                locks = ?present,
                pid = git.pid,
                command = %git.command,
                "git locks kept: a git process works in this repository and may hold them \
                 (git commit keeps index.lock closed while hooks or the editor run)"
            );
            return Vec::new();
        }
        let mut removed = Vec::new();
        for lock in present {
            if procs.open.contains(&lock) {
                continue; // a live process is writing it
            }
            if std::fs::remove_file(&lock).is_ok() {
                tracing::warn!(lock = %lock.display(), "removed a stale git lock no process held (left by a crash)");
                removed.push(lock);
            }
        }
        removed
    }
}

/// The directories that make up this repository, resolved as `/proc` shows paths.
struct Repo {
    dirs: Vec<PathBuf>,
}

impl Repo {
    fn new(git_dir: &Path, work_tree: Option<&Path>) -> Repo {
        let dirs = [Some(git_dir), work_tree]
            .into_iter()
            .flatten()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
            .collect();
        Repo { dirs }
    }

    /// Whether `p` (absolute, or relative to `cwd`) lies in this repository.
    fn holds(&self, p: &Path, cwd: Option<&Path>) -> bool {
        let abs = match (p.is_absolute(), cwd) {
            (true, _) => p.to_path_buf(),
            (false, Some(c)) => c.join(p),
            (false, None) => return false,
        };
        let abs = abs.canonicalize().unwrap_or(abs);
        self.dirs.iter().any(|d| abs.starts_with(d))
    }
}

/// A live git process working in this repository.
#[derive(Debug)]
struct GitProcess {
    pid: u32,
    /// Its command line, for the log.
    command: String,
}

/// What `/proc` says: every file held open, and the git processes working here.
#[derive(Debug, Default)]
struct Scan {
    open: HashSet<PathBuf>,
    git_here: Vec<GitProcess>,
}

/// One pass over `/proc`.
fn scan(repo: &Repo) -> Scan {
    let mut out = Scan::default();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = p.path();
        if let Ok(rd) = std::fs::read_dir(dir.join("fd")) {
            out.open.extend(
                rd.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok()),
            );
        }
        if is_live_git(&dir) && works_in(&dir, repo) {
            let command = std::fs::read(dir.join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            out.git_here.push(GitProcess { pid, command });
        }
    }
    out
}

/// Whether the process at `/proc/PID` is git (or one of its `git-*` helpers) and alive.
fn is_live_git(dir: &Path) -> bool {
    let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
        return false;
    };
    let comm = comm.trim_end_matches('\n');
    if comm != "git" && !comm.starts_with("git-") {
        return false;
    }
    // `/proc/PID/stat`: `pid (comm) state ...`; the comm may hold spaces and parentheses.
    let zombie = std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        });
    zombie != Some(true)
}

/// Whether the git process at `/proc/PID` works in `repo`, or may (pas cannot see).
fn works_in(dir: &Path, repo: &Repo) -> bool {
    let cwd = match std::fs::read_link(dir.join("cwd")) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return true,
        // Gone since the listing.
        Err(_) => return false,
    };
    if cwd.as_deref().is_some_and(|c| repo.holds(c, None)) {
        return true;
    }
    let environ = match std::fs::read(dir.join("environ")) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return true,
        Err(_) => return false,
    };
    const VARS: [&[u8]; 4] = [
        b"GIT_DIR=",
        b"GIT_WORK_TREE=",
        b"GIT_INDEX_FILE=",
        b"GIT_COMMON_DIR=",
    ];
    environ.split(|b| *b == 0).any(|var| {
        VARS.iter().any(|name| {
            var.strip_prefix(*name).is_some_and(|v| {
                !v.is_empty() && repo.holds(Path::new(OsStr::from_bytes(v)), cwd.as_deref())
            })
        })
    })
}

#[cfg(test)]
mod tests;
