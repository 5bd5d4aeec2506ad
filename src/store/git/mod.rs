//! Git as the audit trail of the board.
//!
//! Every card transition becomes part of a commit, so `git log` answers "who moved J-7 when"
//! and `pas status --at 2h ago` can show the board as it stood. pas commits only the paths it
//! changed: each tree is built from HEAD's tree plus exactly those paths, never from the
//! user's index, so their own staged and unstaged work survives. git2 is blocking, so the
//! [`CommitWorker`] owns the store on its own thread and batches what arrives together.
//!
//! This file owns what every part shares: [`GitError`], [`CommitInfo`], and [`GitStore`]
//! itself (opening a repository and mapping workspace paths to repository paths). The rest of
//! `GitStore` lives by responsibility:
//! - `commit.rs`: writing commits (`commit_paths`, and the worker's per-path sources: a file
//!   read at commit time, or a snapshot of what it held at the transition; building trees,
//!   packing big batches, syncing the real index);
//! - `disk.rs`: staging the paths to commit, reading the disk never through a symbolic link;
//! - `index_repair.rs`: bringing the real index back in line with HEAD after a crash;
//! - `history.rs`: reading the past (`history_of`, `resolve_rev`, `files_at`,
//!   `dirty_paths_under`);
//! - `hindex.rs`: the history index in SQLite (which commits touched which card), built in
//!   one pass over git and kept up by the worker, read by `card_history`;
//! - `upkeep.rs`: keeping loose objects and packs bounded (`git repack` at idle priority)
//!   and measuring `.git` for `pas status --json` and `/metrics`;
//! - `worker.rs`: [`CommitWorker`], the thread that batches [`Change`]s.
//!
//! (`snapshot_tests.rs` tests commits from snapshots across those files.)

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::{Commit, ErrorCode, Repository};

mod commit;
mod disk;
pub mod hindex;
mod history;
mod index_repair;
mod locks;
#[cfg(test)]
mod snapshot_tests;
pub mod subject;
#[cfg(test)]
mod test_support;
pub mod upkeep;
mod worker;

pub use hindex::HistorySource;
pub use worker::{Change, CommitWorker, Keeping};

/// The email on every pas commit; the author name says which pas (and is configurable).
const EMAIL: &str = "pas@localhost";

/// What went wrong talking to git, with the path or revision a user needs to act on it.
#[derive(thiserror::Error, Debug)]
pub enum GitError {
    /// pas needs a work tree; a bare repository has none.
    #[error("the git repository for {path} is bare; pas needs a work tree")]
    Bare {
        /// The workspace root.
        path: PathBuf,
    },
    /// A file of the workspace could not be read (or the root could not be resolved).
    #[error("cannot access {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A git operation failed; `doing` says which.
    #[error("git failed while {doing}")]
    Git {
        /// What pas was doing, e.g. "committing 3 path(s)".
        doing: String,
        /// Why.
        source: git2::Error,
    },
    /// The revision is neither something git knows nor a time pas understands.
    #[error("unknown revision '{spec}'")]
    Revision {
        /// The revision as given.
        spec: String,
        /// git's reason, when git was asked.
        source: Option<git2::Error>,
    },
    /// The revision is a time older than every commit on HEAD.
    #[error("no commit on HEAD is as old as '{spec}' ({time})")]
    TooEarly {
        /// The revision as given.
        spec: String,
        /// The time it means.
        time: DateTime<Utc>,
    },
}

/// Shorthand for wrapping an io error with the path it concerns.
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Shorthand for wrapping a git2 error with what we were doing.
fn git(doing: impl FnOnce() -> String) -> impl FnOnce(git2::Error) -> GitError {
    move |source| GitError::Git {
        doing: doing(),
        source,
    }
}

/// One commit that touched a card, as `pas log` and the dashboard's job view show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitInfo {
    /// Full hex oid, for `git show`.
    pub oid: String,
    /// Seven-digit oid, for tables.
    pub short: String,
    /// Author name (`pas`, or a human who moved the card and committed).
    pub author: String,
    /// Commit time.
    pub time: DateTime<Utc>,
    /// The message lines naming this card, or the subject when none does.
    pub lines: Vec<String>,
    /// The card's paths (relative to the workspace root) that this commit added, changed or removed.
    pub paths: Vec<String>,
}

/// A repository opened at a workspace, which may be the work tree's root or a folder inside it.
pub struct GitStore {
    repo: Repository,
    /// The workspace root, canonical.
    root: PathBuf,
    /// The workspace root as the caller named it (absolute), so paths we hand back match theirs.
    given_root: PathBuf,
    /// The workspace root relative to the work tree (empty when they are the same).
    prefix: PathBuf,
    /// Index operations (by repository path) of commits whose real index could not be written
    /// (index.lock held); the next commit applies them, so `git status` ends up clean.
    index_backlog: BTreeMap<String, commit::IndexOp>,
    /// Since when the index lags (for the log line when it catches up).
    index_backlog_since: Option<std::time::Instant>,
}

impl GitStore {
    /// Open the repository that contains `root`, so reading commands work on any checkout.
    /// `Ok(None)` when `root` is in no repository (git is then simply off).
    pub fn open(root: &Path) -> Result<Option<GitStore>, GitError> {
        bound_caches();
        let given_root = std::path::absolute(root).map_err(io_at(root))?;
        let root = root.canonicalize().map_err(io_at(root))?;
        let repo = match Repository::discover(&root) {
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            found => found.map_err(git(|| {
                format!("opening the repository at {}", root.display())
            }))?,
        };
        let bare = || GitError::Bare { path: root.clone() };
        let workdir = repo.workdir().ok_or_else(bare)?;
        let workdir = workdir.canonicalize().map_err(io_at(workdir))?;
        let prefix = root
            .strip_prefix(&workdir)
            .map_err(|_| bare())?
            .to_path_buf();
        let index_backlog = BTreeMap::new();
        Ok(Some(GitStore {
            repo,
            root,
            given_root,
            prefix,
            index_backlog,
            index_backlog_since: None,
        }))
    }

    /// Opens the repository afresh, letting go of what this handle mapped and cached: a
    /// start-up that compared a year of trees has touched most of the pack's index, and
    /// those pages would stay in the daemon's resident memory.
    pub fn reopen(&mut self) -> Result<(), GitError> {
        let path = self.repo.path().to_path_buf();
        self.repo = Repository::open(&path).map_err(git(|| {
            format!("opening the repository at {}", path.display())
        }))?;
        Ok(())
    }

    /// `git init` at `root` unless it is already inside a repository (`pas init` in a
    /// subfolder of an existing project must not nest a second repository).
    pub fn init(root: &Path) -> Result<GitStore, GitError> {
        fs::create_dir_all(root).map_err(io_at(root))?;
        if let Some(store) = Self::open(root)? {
            return Ok(store);
        }
        let doing = || format!("creating a repository at {}", root.display());
        Repository::init(root).map_err(git(doing))?;
        Self::open(root)?.ok_or_else(|| GitError::Bare { path: root.into() })
    }

    /// The path relative to the work tree with '/' separators, as git stores it (empty for the
    /// work tree itself); `None` outside the workspace. Relative paths are taken from the root.
    fn repo_rel(&self, path: &Path) -> Option<String> {
        let rel = if path.is_relative() {
            path
        } else {
            path.strip_prefix(&self.root)
                .or_else(|_| path.strip_prefix(&self.given_root))
                .ok()?
        };
        let mut out = String::new();
        for c in self.prefix.components().chain(rel.components()) {
            match c {
                Component::Normal(part) => {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(part.to_str()?);
                }
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(out)
    }

    /// A repository-relative path as an absolute path under the caller's root.
    fn abs(&self, repo_rel: &str) -> Option<PathBuf> {
        Some(
            self.given_root
                .join(Path::new(repo_rel).strip_prefix(&self.prefix).ok()?),
        )
    }

    /// Make libgit2 look at the packs again (a repack replaced some).
    pub(crate) fn refresh_odb(&self) {
        if let Err(e) = self.repo.odb().and_then(|odb| odb.refresh()) {
            tracing::debug!(error = %e, "cannot refresh the object database");
        }
    }

    fn head_commit(&self) -> Result<Option<Commit<'_>>, git2::Error> {
        match self.repo.head() {
            Ok(head) => head.peel_to_commit().map(Some),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// libgit2's object cache may hold 256 MiB, and every commit pas makes adds its small trees
/// to it: a daemon committing a few times a second grew some 80 MiB an hour (`pas bench
/// soak`). pas reads back little of what it wrote, so a few MiB of cache serve as well, and
/// mapped pack windows are held to 64 MiB. Set once per process, before any repository.
fn bound_caches() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        libgit2_sys::init();
        // SAFETY: both options take one size argument of the type given; libgit2 is
        // initialised above, and no repository is open yet in this process's git code.
        let rc = unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_SET_CACHE_MAX_SIZE as std::os::raw::c_int,
                (4usize << 20) as libc::ssize_t,
            )
        };
        if rc != 0 {
            tracing::debug!(rc, "could not bound libgit2's object cache");
        }
        // SAFETY: as above; a plain size.
        if let Err(e) = unsafe { git2::opts::set_mwindow_mapped_limit(64 << 20) } {
            tracing::debug!(error = %e, "could not bound libgit2's mapped pack windows");
        }
    });
}

impl GitStore {
    /// What a failed commit or index update means for the user when the fault is one that
    /// passes (a lock another process holds, a full disk), and what pas does about it.
    /// `None` for other errors.
    fn fault_hint(&self, e: &GitError) -> Option<String> {
        let text = chain(e);
        if text.contains("No space left") || text.contains("os error 28") {
            return Some(
                "no space left on the device holding the repository; pas keeps the changes \
                 and commits them once space is freed"
                    .into(),
            );
        }
        let named = text
            .split(['\'', '"'])
            .find(|piece| piece.ends_with(".lock"))
            .map(str::to_string);
        // libgit2 names a ref's lock file, but not the index's.
        let lock = named.or_else(|| match e {
            GitError::Git { source, .. } if source.code() == ErrorCode::Locked => {
                let git_dir = self.repo.path();
                Some(match source.class() {
                    git2::ErrorClass::Index => git_dir.join("index.lock").display().to_string(),
                    _ => format!("a lock file in {}", git_dir.display()),
                })
            }
            _ => None,
        })?;
        Some(format!(
            "{lock} is held by another process (a git command running?); pas keeps the \
             changes and retries until it is released (delete the file only if no git \
             process runs)"
        ))
    }
}

/// An error and its causes on one line, for logs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn workspace_in_a_subfolder() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init(dir.path()).unwrap();
        let root = dir.path().join("proj");
        let mut store = GitStore::init(&root).unwrap();
        assert!(!root.join(".git").exists(), "no nested repository");
        let card = write(&root, "work/inbox/J-1.yaml", "title: a\n");
        let dirty = store.dirty_paths_under(&root.join("work")).unwrap();
        assert_eq!(dirty, std::slice::from_ref(&card));
        let oid = store
            .commit_paths(&[card], "pas: J-1 new", "pas")
            .unwrap()
            .unwrap();
        assert_eq!(tree_paths(&store.repo, oid), ["proj/work/inbox/J-1.yaml"]);
        let files = store.files_at(oid, Path::new("work")).unwrap();
        assert_eq!(
            files,
            [(PathBuf::from("work/inbox/J-1.yaml"), b"title: a\n".to_vec())]
        );
        assert_eq!(
            store.history_of("J-1").unwrap()[0].paths,
            ["work/inbox/J-1.yaml"]
        );
        assert!(GitStore::open(&std::env::temp_dir().join("no-such-dir")).is_err());
    }
}
