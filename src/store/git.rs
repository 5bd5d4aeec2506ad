//! Git as the audit trail of the board.
//!
//! Every card transition becomes part of a commit, so `git log` answers "who moved J-7 when"
//! and `pas status --at 2h ago` can show the board as it stood. pas commits only the paths it
//! changed: each tree is built from HEAD's tree plus exactly those paths, never from the
//! user's index, so their own staged and unstaged work survives. git2 is blocking, so the
//! [`CommitWorker`] owns the store on its own thread and batches what arrives together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::LazyLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use git2::build::TreeUpdateBuilder;
use git2::{
    Commit, ErrorCode, FileMode, IndexEntry, IndexTime, ObjectType, Oid, Repository, Signature,
    StatusOptions, Tree, TreeWalkMode, TreeWalkResult,
};
use regex::Regex;

/// The email on every pas commit; the author name says which pas (and is configurable).
const EMAIL: &str = "pas@localhost";
/// Transition lines kept in one commit message body, so a 10,000-card batch stays readable.
const MAX_BODY_LINES: usize = 2000;
/// Batches touching more paths than this store their objects as one pack, not loose files.
const PACK_OVER: usize = 256;

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
    /// Paths committed whose entries in the real index could not be written (index.lock held);
    /// they are synced again on the next commit so `git status` ends up clean.
    index_backlog: BTreeSet<PathBuf>,
}

/// Paths to commit as read from disk: (path relative to the work tree, the file's index entry
/// with its blob id, or `None` when the path is gone).
type Staged = Vec<(String, Option<IndexEntry>)>;

impl GitStore {
    /// Open the repository that contains `root`, so reading commands work on any checkout.
    /// `Ok(None)` when `root` is in no repository (git is then simply off).
    pub fn open(root: &Path) -> Result<Option<GitStore>, GitError> {
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
        let index_backlog = BTreeSet::new();
        Ok(Some(GitStore {
            repo,
            root,
            given_root,
            prefix,
            index_backlog,
        }))
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

    fn head_commit(&self) -> Result<Option<Commit<'_>>, git2::Error> {
        match self.repo.head() {
            Ok(head) => head.peel_to_commit().map(Some),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Commit exactly `paths` (a path that exists is added from disk, a missing one removed)
    /// on HEAD, as `author` <pas@localhost>. Nothing else enters the commit, and the real
    /// index is updated for these paths only, so `git status` shows them clean while the
    /// user's staged and unstaged changes elsewhere survive. Paths outside the workspace are
    /// skipped with a warning. `Ok(None)` (no commit) when the tree would not change.
    pub fn commit_paths(
        &mut self,
        paths: &[PathBuf],
        message: &str,
        author: &str,
    ) -> Result<Option<Oid>, GitError> {
        let sig = Signature::now(author, EMAIL).map_err(git(|| "making the signature".into()))?;
        self.commit_as(paths, message, &sig)
    }

    fn commit_as(
        &mut self,
        paths: &[PathBuf],
        message: &str,
        sig: &Signature<'_>,
    ) -> Result<Option<Oid>, GitError> {
        // Paths committed earlier whose index entries could not be written ride along: their
        // tree entries are unchanged, but the index gets fixed.
        let mut all = self.index_backlog.clone();
        all.extend(paths.iter().cloned());
        let (oid, staged) = self.write_commit(&all, message, sig)?;
        match self.sync_index(&staged) {
            Ok(()) => self.index_backlog.clear(),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "git index not updated; retrying with the next commit");
                self.index_backlog = all;
            }
        }
        Ok(oid)
    }

    fn write_commit(
        &self,
        paths: &BTreeSet<PathBuf>,
        message: &str,
        sig: &Signature<'_>,
    ) -> Result<(Option<Oid>, Staged), GitError> {
        let doing = || format!("committing {} path(s)", paths.len());
        let head = self.head_commit().map_err(git(doing))?;
        let base = head.as_ref().map(|c| c.tree_id());
        let objects = self.repo.path().join("objects");
        let (tree, base, staged) = match objects.to_str().filter(|_| paths.len() > PACK_OVER) {
            // Thousands of loose files are slow to create, and git probes the disk before each
            // write: put the blobs in a memory-only odb, only then let it see the repository's
            // objects (to build the trees), and store what is new as one pack.
            Some(objects) => {
                let odb = git2::Odb::new().map_err(git(doing))?;
                odb.add_new_mempack_backend(1000).map_err(git(doing))?;
                let staged = self.read_paths(paths, |bytes| odb.write(ObjectType::Blob, bytes))?;
                odb.add_disk_alternate(objects).map_err(git(doing))?;
                let scratch = Repository::from_odb(odb).map_err(git(doing))?;
                let (tree, base) = build_tree(&scratch, base, &staged).map_err(git(doing))?;
                if tree != base {
                    self.write_pack(&scratch, tree, base, &staged)
                        .map_err(git(doing))?;
                }
                (tree, base, staged)
            }
            None => {
                let staged = self.read_paths(paths, |bytes| self.repo.blob(bytes))?;
                let (tree, base) = build_tree(&self.repo, base, &staged).map_err(git(doing))?;
                (tree, base, staged)
            }
        };
        if tree == base {
            return Ok((None, staged));
        }
        let tree = self.repo.find_tree(tree).map_err(git(doing))?;
        let parents: Vec<&Commit<'_>> = head.iter().collect();
        let oid = self
            .repo
            .commit(Some("HEAD"), sig, sig, message, &tree, &parents);
        Ok((Some(oid.map_err(git(doing))?), staged))
    }

    /// Read `paths` from disk, storing each file's bytes with `store`.
    fn read_paths(
        &self,
        paths: &BTreeSet<PathBuf>,
        mut store: impl FnMut(&[u8]) -> Result<Oid, git2::Error>,
    ) -> Result<Staged, GitError> {
        let mut staged = Vec::with_capacity(paths.len());
        for path in paths {
            let rel = self
                .repo_rel(path)
                .filter(|r| !r.is_empty() && r.split('/').next() != Some(".git"));
            let Some(rel) = rel else {
                tracing::warn!(path = %path.display(), "not committing a path outside the workspace");
                continue;
            };
            let entry = match read_file(path, &rel)? {
                Some((bytes, mut entry)) => {
                    entry.id = store(&bytes).map_err(git(|| format!("storing {rel}")))?;
                    Some(entry)
                }
                None => None,
            };
            staged.push((rel, entry));
        }
        Ok(staged)
    }

    /// Store the objects `scratch` made for a commit (the blobs and the changed folders'
    /// trees) as one pack, handed to the indexer in one piece (it maps the pack per append).
    fn write_pack(
        &self,
        scratch: &Repository,
        tree: Oid,
        base: Oid,
        staged: &Staged,
    ) -> Result<(), git2::Error> {
        let mut pack = scratch.packbuilder()?;
        for entry in staged.iter().filter_map(|(_, e)| e.as_ref()) {
            pack.insert_object(entry.id, None)?;
        }
        let (tree, base) = (scratch.find_tree(tree)?, scratch.find_tree(base)?);
        for tree in new_trees(scratch, &tree, Some(&base))? {
            pack.insert_object(tree, None)?;
        }
        let mut buf = git2::Buf::new();
        pack.write_buf(&mut buf)?;
        let odb = self.repo.odb()?;
        let mut writer = odb.packwriter()?;
        let written = writer.write_all(&buf);
        written.map_err(|e| git2::Error::from_str(&format!("writing the pack: {e}")))?;
        writer.commit().map(|_| ())
    }

    /// Make the real index agree with what we committed, for our paths only.
    fn sync_index(&self, staged: &Staged) -> Result<(), GitError> {
        let doing = || "updating the git index".to_string();
        let mut index = self.repo.index().map_err(git(doing))?;
        // Pick up what other processes (a user's `git add`) wrote since we last looked.
        index.read(false).map_err(git(doing))?;
        for (rel, entry) in staged {
            match entry {
                Some(entry) => index.add(entry),
                None => index.remove_path(Path::new(rel)),
            }
            .map_err(git(doing))?;
        }
        index.write().map_err(git(doing))
    }

    /// Paths under `dir` that differ between HEAD and the work tree (untracked, modified,
    /// deleted), leaving out git-ignored files: at start-up these are what a crash left
    /// uncommitted. Absolute paths under the root as the caller named it.
    pub fn dirty_paths_under(&self, dir: &Path) -> Result<Vec<PathBuf>, GitError> {
        let Some(rel) = self.repo_rel(dir) else {
            return Ok(Vec::new());
        };
        let rel = Some(rel).filter(|r| !r.is_empty());
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        opts.exclude_submodules(true);
        if let Some(rel) = &rel {
            opts.pathspec(rel);
        }
        let doing = || format!("reading the status of {}", dir.display());
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(git(doing))?;
        let under = |p: &str| {
            rel.as_ref()
                .map_or(true, |r| p == r || p.starts_with(&format!("{r}/")))
        };
        Ok(statuses
            .iter()
            .filter(|s| !s.status().is_ignored())
            .filter_map(|s| s.path().filter(|p| under(p)).and_then(|p| self.abs(p)))
            .collect())
    }

    /// The card `<id>.yaml` wherever it sits under `work/` in `tree`: path -> blob.
    fn card_blobs(
        &self,
        tree: &Tree<'_>,
        file: &str,
    ) -> Result<BTreeMap<String, Oid>, git2::Error> {
        let mut found = BTreeMap::new();
        let Some(work) = self.work_tree(tree)? else {
            return Ok(found);
        };
        for state in work.iter().filter(|e| e.kind() == Some(ObjectType::Tree)) {
            let name = String::from_utf8_lossy(state.name_bytes()).into_owned();
            let dir = self.repo.find_tree(state.id())?;
            let mut dirs = Vec::new();
            if name == "assigned" {
                for agent in dir.iter().filter(|e| e.kind() == Some(ObjectType::Tree)) {
                    let agent_name = String::from_utf8_lossy(agent.name_bytes());
                    dirs.push((
                        format!("assigned/{agent_name}"),
                        self.repo.find_tree(agent.id())?,
                    ));
                }
            }
            dirs.push((name, dir));
            for (path, dir) in dirs {
                if let Some(e) = dir.get_name(file) {
                    found.insert(format!("work/{path}/{file}"), e.id());
                }
            }
        }
        Ok(found)
    }

    /// The workspace's `work/` folder in a commit's tree.
    fn work_tree(&self, tree: &Tree<'_>) -> Result<Option<Tree<'_>>, git2::Error> {
        match tree.get_path(&self.prefix.join("work")) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => self.repo.find_tree(e.id()).map(Some),
            _ => Ok(None),
        }
    }

    /// Every commit on HEAD (newest first) that added, changed or removed the card `<id>.yaml`
    /// in any state folder, for `pas log ID`. Merges are compared with their first parent.
    pub fn history_of(&self, id: &str) -> Result<Vec<CommitInfo>, GitError> {
        self.history(id)
            .map_err(git(|| format!("reading the history of {id}")))
    }

    fn history(&self, id: &str) -> Result<Vec<CommitInfo>, git2::Error> {
        let Some(head) = self.head_commit()? else {
            return Ok(Vec::new());
        };
        let file = format!("{id}.yaml");
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(git2::Sort::TIME)?;
        walk.push(head.id())?;
        let mut out = Vec::new();
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            let tree = commit.tree()?;
            let parent = commit.parent(0).and_then(|p| p.tree()).ok();
            let work = self.work_tree(&tree)?.map(|t| t.id());
            let parent_work = match &parent {
                Some(t) => self.work_tree(t)?.map(|t| t.id()),
                None => None,
            };
            if work == parent_work {
                continue; // work/ untouched: skip reading its folders
            }
            let now = self.card_blobs(&tree, &file)?;
            let before = match &parent {
                Some(t) => self.card_blobs(t, &file)?,
                None => BTreeMap::new(),
            };
            let touched: BTreeSet<&String> = now
                .keys()
                .chain(before.keys())
                .filter(|p| now.get(*p) != before.get(*p))
                .collect();
            if touched.is_empty() {
                continue;
            }
            let message = commit.message().unwrap_or_default();
            let mut lines: Vec<String> = message
                .lines()
                .filter(|l| mentions(l, id))
                .map(str::to_string)
                .collect();
            if lines.is_empty() {
                lines.push(commit.summary().unwrap_or_default().to_string());
            }
            let oid = commit.id().to_string();
            out.push(CommitInfo {
                short: oid[..7].to_string(),
                oid,
                author: commit.author().name().unwrap_or_default().to_string(),
                time: DateTime::from_timestamp(commit.time().seconds(), 0).unwrap_or_default(),
                lines,
                paths: touched.into_iter().cloned().collect(),
            });
        }
        Ok(out)
    }

    /// Resolve what `pas status --at` was given: a git revision (`HEAD~2`, a short sha, a
    /// branch or tag), a relative time (`2h ago`, `3 days ago`) or a time (RFC 3339,
    /// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM`, local time), which means the newest commit on
    /// HEAD's first-parent line made at or before it. `now` is injected so tests hold time.
    pub fn resolve_rev(&self, spec: &str, now: DateTime<Utc>) -> Result<Oid, GitError> {
        let rev = |source| GitError::Revision {
            spec: spec.into(),
            source: Some(source),
        };
        if let Some(time) = parse_time(spec, now)? {
            let mut commit = self.head_commit().map_err(rev)?;
            while let Some(c) = commit {
                if c.time().seconds() <= time.timestamp() {
                    return Ok(c.id());
                }
                commit = c.parent(0).ok();
            }
            return Err(GitError::TooEarly {
                spec: spec.into(),
                time,
            });
        }
        let object = self.repo.revparse_single(spec).map_err(rev)?;
        Ok(object.peel_to_commit().map_err(rev)?.id())
    }

    /// Every file under the workspace's `rel_dir` (e.g. `work`) as it was at `commit`: (path
    /// relative to the workspace root, bytes), so the board of the past can be rebuilt.
    pub fn files_at(
        &self,
        commit: Oid,
        rel_dir: &Path,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, GitError> {
        self.files(commit, rel_dir)
            .map_err(git(|| format!("reading {} at {commit}", rel_dir.display())))
    }

    fn files(&self, commit: Oid, rel_dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, git2::Error> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let dir = self.prefix.join(rel_dir);
        let dir: PathBuf = dir
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let sub = match tree.get_path(&dir) {
            _ if dir.as_os_str().is_empty() => tree,
            Ok(e) if e.kind() == Some(ObjectType::Tree) => self.repo.find_tree(e.id())?,
            _ => return Ok(Vec::new()),
        };
        let mut blobs = Vec::new();
        sub.walk(TreeWalkMode::PreOrder, |parent, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                let name = String::from_utf8_lossy(entry.name_bytes());
                blobs.push((rel_dir.join(parent).join(&*name), entry.id()));
            }
            TreeWalkResult::Ok
        })?;
        let read = |(path, oid)| Ok((path, self.repo.find_blob(oid)?.content().to_vec()));
        blobs.into_iter().map(read).collect()
    }
}

/// The trees of `tree` that `base` lacks: the folders a commit changed, for packing.
fn new_trees(
    repo: &Repository,
    tree: &Tree<'_>,
    base: Option<&Tree<'_>>,
) -> Result<Vec<Oid>, git2::Error> {
    let mut out = vec![tree.id()];
    for entry in tree.iter().filter(|e| e.kind() == Some(ObjectType::Tree)) {
        let old = base.and_then(|b| b.get_name_bytes(entry.name_bytes()));
        let old = old
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .map(|e| e.id());
        if old != Some(entry.id()) {
            let old = old.map(|id| repo.find_tree(id)).transpose()?;
            out.extend(new_trees(repo, &repo.find_tree(entry.id())?, old.as_ref())?);
        }
    }
    Ok(out)
}

/// The tree `base` (HEAD's, or empty when unborn) with `staged` applied, written in `repo`:
/// (new tree, base tree).
fn build_tree(
    repo: &Repository,
    base: Option<Oid>,
    staged: &Staged,
) -> Result<(Oid, Oid), git2::Error> {
    let base = match base {
        Some(id) => repo.find_tree(id)?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let mut update = TreeUpdateBuilder::new();
    let mut folders: HashMap<&str, Option<Tree<'_>>> = HashMap::new();
    for (rel, entry) in staged {
        if let Some(entry) = entry {
            let exec = entry.mode == 0o100755;
            let mode = if exec {
                FileMode::BlobExecutable
            } else {
                FileMode::Blob
            };
            update.upsert(rel.as_str(), entry.id, mode);
            continue;
        }
        // Removing what the tree lacks is an error in libgit2, so look first; each folder's
        // tree is read once (libgit2 does not cache big trees).
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let folder = folders.entry(dir).or_insert_with(|| match dir {
            "" => Some(base.clone()),
            _ => base
                .get_path(Path::new(dir))
                .and_then(|e| repo.find_tree(e.id()))
                .ok(),
        });
        if folder
            .as_ref()
            .and_then(|t| t.get_name(name))
            .is_some_and(|e| e.kind() == Some(ObjectType::Blob))
        {
            update.remove(rel.as_str());
        }
    }
    Ok((update.create_updated(repo, &base)?, base.id()))
}

/// Read a file for committing: its bytes and an index entry carrying its stat data, so the
/// real index sees it clean without hashing it again. `None` when it is gone (or a folder).
fn read_file(path: &Path, rel: &str) -> Result<Option<(Vec<u8>, IndexEntry)>, GitError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    // Stat the open file before reading it: if it changes after, its mtime tells git.
    let meta = file.metadata().map_err(io_at(path))?;
    if meta.is_dir() {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io_at(path))?;
    Ok(Some((bytes, index_entry(&meta, rel))))
}

/// An index entry with the file's stat data (truncated to 32 bits, as git itself does), so
/// `git status` trusts it. Elsewhere than unix git re-hashes the file: slower, still clean.
fn index_entry(meta: &fs::Metadata, rel: &str) -> IndexEntry {
    let zero = IndexTime::new(0, 0);
    #[rustfmt::skip]
    let mut entry = IndexEntry {
        ctime: zero, mtime: zero, dev: 0, ino: 0, mode: 0o100644, uid: 0, gid: 0,
        file_size: meta.len() as u32, id: Oid::zero(), flags: 0, flags_extended: 0,
        path: rel.as_bytes().to_vec(),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        entry.ctime = IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32);
        entry.mtime = IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32);
        (entry.dev, entry.ino) = (meta.dev() as u32, meta.ino() as u32);
        (entry.uid, entry.gid) = (meta.uid(), meta.gid());
        if meta.mode() & 0o111 != 0 {
            entry.mode = 0o100755;
        }
    }
    entry
}

/// Whether `line` names the card `id` as a whole word (so `J-7` is not found in `J-70`).
fn mentions(line: &str, id: &str) -> bool {
    let part_of_id = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    line.match_indices(id).any(|(at, _)| {
        !line[..at].ends_with(part_of_id) && !line[at + id.len()..].starts_with(part_of_id)
    })
}

/// `N unit ago`; compiled once.
static RELATIVE: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(r"^(\d+)\s*([A-Za-z]+)\s+ago$").expect("valid regex")
});

/// Parse the time forms of `resolve_rev`; `Ok(None)` when `spec` is not a time at all.
fn parse_time(spec: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, GitError> {
    let s = spec.trim();
    let bad = || GitError::Revision {
        spec: spec.into(),
        source: None,
    };
    if let Some(caps) = RELATIVE.captures(s) {
        let n: i64 = caps[1].parse().map_err(|_| bad())?;
        let unit = match caps[2].to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        let ago = n
            .checked_mul(unit)
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(bad)?;
        return now.checked_sub_signed(ago).map(Some).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    match naive {
        Some(n) => Local
            .from_local_datetime(&n)
            .earliest()
            .map(|t| Some(t.with_timezone(&Utc)))
            .ok_or_else(bad),
        None => Ok(None),
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

/// One batch of changes to commit: the paths touched and one message line per transition,
/// e.g. `pas: J-7 inbox -> assigned/director-code`.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Absolute paths under the workspace (present: added; gone: removed).
    pub paths: Vec<PathBuf>,
    /// One line per transition, for the commit message.
    pub lines: Vec<String>,
}

enum Msg {
    Change(Change),
    Flush(mpsc::Sender<Option<Oid>>),
    Shutdown,
}

/// The commit worker: owns a [`GitStore`] on its own thread so the daemon never blocks on git,
/// and folds every change arriving within `window` of the first into one commit.
pub struct CommitWorker {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl CommitWorker {
    /// Start the worker thread; commits are authored by `author`.
    pub fn spawn(store: GitStore, window: Duration, author: String) -> CommitWorker {
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            store,
            window,
            author,
            paths: BTreeSet::new(),
            lines: Vec::new(),
            last: None,
            failures: 0,
        };
        let thread = thread::Builder::new()
            .name("pas-git".into())
            .spawn(move || worker.run(rx));
        let thread = thread
            .map_err(|e| tracing::error!(error = %e, "cannot start the git worker"))
            .ok();
        CommitWorker { tx, thread }
    }

    /// Queue a change; never blocks.
    pub fn send(&self, change: Change) {
        if self.tx.send(Msg::Change(change)).is_err() {
            tracing::warn!("git worker is gone; change not committed (start-up will commit it)");
        }
    }

    /// Block until everything queued before this call has been committed (one attempt: a
    /// failing commit stays queued). Returns the worker's last commit, if any.
    pub fn flush(&self) -> Option<Oid> {
        let (reply, answer) = mpsc::channel();
        self.tx.send(Msg::Flush(reply)).ok()?;
        answer.recv().ok().flatten()
    }

    /// Commit what is pending and join the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.tx.send(Msg::Shutdown);
            if thread.join().is_err() {
                tracing::error!("git worker panicked");
            }
        }
    }
}

impl Drop for CommitWorker {
    /// Dropping the worker commits what is pending, like `shutdown`.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The state of the worker thread: what is waiting to be committed.
struct Worker {
    store: GitStore,
    window: Duration,
    author: String,
    paths: BTreeSet<PathBuf>,
    lines: Vec<String>,
    last: Option<Oid>,
    failures: u32,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut deadline: Option<Instant> = None;
        loop {
            let msg = match deadline {
                None => rx.recv().ok(),
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => {
                        self.commit();
                        deadline = self.retry_at();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match msg {
                Some(Msg::Change(change)) => {
                    self.paths.extend(change.paths);
                    self.lines.extend(change.lines);
                    let gather = Instant::now() + self.window;
                    deadline = Some(deadline.map_or(gather, |d| d.min(gather)));
                }
                Some(Msg::Flush(reply)) => {
                    self.commit();
                    let _ = reply.send(self.last);
                    deadline = self.retry_at();
                }
                Some(Msg::Shutdown) | None => {
                    for attempt in 0..3 {
                        if self.commit() {
                            return;
                        }
                        thread::sleep(Duration::from_millis(100 << attempt));
                    }
                    tracing::error!(
                        paths = self.paths.len(),
                        "left uncommitted; start-up commits them"
                    );
                    return;
                }
            }
        }
    }

    /// After a failure, back off (doubling up to 30 s); a new change retries sooner.
    fn retry_at(&self) -> Option<Instant> {
        if self.paths.is_empty() && self.lines.is_empty() {
            return None;
        }
        let base = self.window.max(Duration::from_millis(250));
        Some(
            Instant::now()
                + (base * 2u32.saturating_pow(self.failures)).min(Duration::from_secs(30)),
        )
    }

    /// Commit everything pending; true when nothing is left.
    fn commit(&mut self) -> bool {
        if self.paths.is_empty() && self.lines.is_empty() {
            return true;
        }
        let paths: Vec<PathBuf> = self.paths.iter().cloned().collect();
        let message = batch_message(&self.lines, paths.len());
        match self.store.commit_paths(&paths, &message, &self.author) {
            Ok(oid) => {
                self.last = oid.or(self.last);
                self.paths.clear();
                self.lines.clear();
                self.failures = 0;
                true
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(error = %chain(&e), paths = paths.len(), "git commit failed; will retry");
                false
            }
        }
    }
}

/// One line for one transition; else a count as subject and one line per transition.
fn batch_message(lines: &[String], paths: usize) -> String {
    match lines {
        [] => format!("pas: update {paths} file(s)"),
        [one] => one.clone(),
        _ => {
            let mut msg = format!("pas: {} transitions\n\n", lines.len());
            for line in lines.iter().take(MAX_BODY_LINES) {
                msg.push_str(line);
                msg.push('\n');
            }
            if lines.len() > MAX_BODY_LINES {
                msg.push_str(&format!("... and {} more\n", lines.len() - MAX_BODY_LINES));
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{Status, Time};
    use tempfile::TempDir;

    fn setup() -> (TempDir, GitStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = GitStore::init(dir.path()).unwrap();
        (dir, store)
    }

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn mv(root: &Path, from: &str, to: &str) -> Vec<PathBuf> {
        let (from, to) = (root.join(from), root.join(to));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::rename(&from, &to).unwrap();
        vec![from, to]
    }

    /// Commit as pas at a chosen time (seconds since the epoch); the commit must happen.
    fn commit_at(store: &mut GitStore, paths: &[PathBuf], msg: &str, time: i64) -> Oid {
        let sig = Signature::new("pas", EMAIL, &Time::new(time, 0)).unwrap();
        store.commit_as(paths, msg, &sig).unwrap().unwrap()
    }

    /// Every blob path in the commit's tree.
    fn tree_paths(repo: &Repository, oid: Oid) -> Vec<String> {
        let mut out = Vec::new();
        let tree = repo.find_commit(oid).unwrap().tree().unwrap();
        tree.walk(TreeWalkMode::PreOrder, |dir, e| {
            if e.kind() == Some(ObjectType::Blob) {
                out.push(format!("{dir}{}", e.name().unwrap()));
            }
            TreeWalkResult::Ok
        })
        .unwrap();
        out
    }

    fn status(repo: &Repository, rel: &str) -> Status {
        repo.status_file(Path::new(rel)).unwrap()
    }

    #[test]
    fn commits_paths_and_moves() {
        let (dir, mut store) = setup();
        let root = dir.path();
        let a = write(root, "work/inbox/J-1.yaml", "title: a\n");
        let b = write(root, "work/inbox/J-2.yaml", "title: b\n");
        let first = store
            .commit_paths(&[a, b], "pas: 2 new", "pas")
            .unwrap()
            .unwrap();
        let repo = Repository::open(root).unwrap();
        assert_eq!(
            tree_paths(&repo, first),
            ["work/inbox/J-1.yaml", "work/inbox/J-2.yaml"]
        );
        let paths = mv(root, "work/inbox/J-1.yaml", "work/assigned/x/J-1.yaml");
        let second = store
            .commit_paths(&paths, "pas: J-1 inbox -> assigned/x", "pas")
            .unwrap();
        let second = repo.find_commit(second.unwrap()).unwrap();
        assert_eq!(
            tree_paths(&repo, second.id()),
            ["work/assigned/x/J-1.yaml", "work/inbox/J-2.yaml"]
        );
        assert_eq!(second.parent_id(0).unwrap(), first);
        assert_eq!(
            (second.author().name(), second.author().email()),
            (Some("pas"), Some(EMAIL))
        );
        assert_eq!(
            store.commit_paths(&paths, "again", "pas").unwrap(),
            None,
            "nothing changed"
        );
        assert!(
            repo.statuses(None).unwrap().is_empty(),
            "work tree clean after commit"
        );
    }

    #[test]
    fn user_changes_survive() {
        let (dir, mut store) = setup();
        let root = dir.path();
        let own = [
            write(root, "notes.txt", "mine\n"),
            write(root, "draft.txt", "v1\n"),
        ];
        let base = store
            .commit_paths(&own, "user setup", "me")
            .unwrap()
            .unwrap();
        // The user, in another process: stages a new file, edits another without staging.
        write(root, "staged.txt", "staged\n");
        write(root, "draft.txt", "v2\n");
        let user = Repository::open(root).unwrap();
        let mut index = user.index().unwrap();
        index.add_path(Path::new("staged.txt")).unwrap();
        index.write().unwrap();
        // pas commits a card while someone holds index.lock: the commit still happens.
        let card = write(root, "work/inbox/J-1.yaml", "title: a\n");
        let lock = root.join(".git/index.lock");
        fs::write(&lock, "").unwrap();
        let oid = store
            .commit_paths(&[card], "pas: J-1 new", "pas")
            .unwrap()
            .unwrap();
        fs::remove_file(&lock).unwrap();
        let mut paths = tree_paths(&user, oid);
        paths.sort();
        assert_eq!(paths, ["draft.txt", "notes.txt", "work/inbox/J-1.yaml"]);
        let tree = |oid| user.find_commit(oid).unwrap().tree().unwrap();
        let diff = user
            .diff_tree_to_tree(Some(&tree(base)), Some(&tree(oid)), None)
            .unwrap();
        assert_eq!(diff.deltas().len(), 1, "only the card changed");
        // The next commit also brings the index up to date for J-1.
        let card2 = write(root, "work/inbox/J-2.yaml", "title: b\n");
        store
            .commit_paths(&[card2], "pas: J-2 new", "pas")
            .unwrap()
            .unwrap();
        assert_eq!(status(&user, "staged.txt"), Status::INDEX_NEW);
        assert_eq!(status(&user, "draft.txt"), Status::WT_MODIFIED);
        assert_eq!(status(&user, "work/inbox/J-1.yaml"), Status::CURRENT);
        assert_eq!(status(&user, "work/inbox/J-2.yaml"), Status::CURRENT);
    }

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

    #[test]
    fn dirty_paths_honour_gitignore() {
        let (dir, mut store) = setup();
        let root = dir.path();
        let ignore = write(root, ".gitignore", "work/heartbeats/\n");
        let a = write(root, "work/done/A.yaml", "a\n");
        let b = write(root, "work/done/B.yaml", "b\n");
        store
            .commit_paths(&[ignore, a.clone(), b.clone()], "setup", "pas")
            .unwrap();
        assert!(store
            .dirty_paths_under(&root.join("work"))
            .unwrap()
            .is_empty());
        write(root, "work/done/A.yaml", "a2\n");
        fs::remove_file(&b).unwrap();
        let c = write(root, "work/inbox/C.yaml", "c\n");
        write(root, "work/heartbeats/x.jsonl", "{}\n");
        write(root, "elsewhere.txt", "not under work\n");
        let mut dirty = store.dirty_paths_under(&root.join("work")).unwrap();
        dirty.sort();
        assert_eq!(dirty, [a, b, c]);
        assert!(store
            .dirty_paths_under(Path::new("/elsewhere"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn handles_cross_threads() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<GitStore>();
        send::<CommitWorker>();
        sync::<CommitWorker>();
    }

    #[test]
    fn history_follows_one_card() {
        let (dir, mut store) = setup();
        let (root, s) = (dir.path(), &mut store);
        let new = [
            write(root, "work/inbox/J-1.yaml", "1\n"),
            write(root, "work/inbox/J-10.yaml", "10\n"),
        ];
        commit_at(
            s,
            &new,
            "pas: 2 transitions\n\npas: J-1 new\npas: J-10 new\n",
            1000,
        );
        let moved = mv(root, "work/inbox/J-1.yaml", "work/assigned/x/J-1.yaml");
        commit_at(s, &moved, "pas: J-1 inbox -> assigned/x", 2000);
        let other = mv(root, "work/inbox/J-10.yaml", "work/assigned/y/J-10.yaml");
        commit_at(s, &other, "pas: J-10 inbox -> assigned/y", 3000);
        let done = mv(root, "work/assigned/x/J-1.yaml", "work/done/J-1.yaml");
        commit_at(s, &done, "finished", 4000);
        let log = store.history_of("J-1").unwrap();
        let lines: Vec<_> = log.iter().map(|c| c.lines.join("|")).collect();
        assert_eq!(
            lines,
            ["finished", "pas: J-1 inbox -> assigned/x", "pas: J-1 new"]
        );
        assert_eq!(
            log[1].paths,
            ["work/assigned/x/J-1.yaml", "work/inbox/J-1.yaml"]
        );
        assert_eq!(
            (log[0].time.timestamp(), log[0].author.as_str()),
            (4000, "pas")
        );
        assert_eq!(store.history_of("J-10").unwrap().len(), 2);
        assert!(store.history_of("J").unwrap().is_empty());
    }

    #[test]
    fn resolves_revisions_and_times_and_reads_the_past() {
        let (dir, mut store) = setup();
        let mut oids = Vec::new();
        for (i, time) in [1000, 2000, 3000].into_iter().enumerate() {
            let card = write(dir.path(), "work/inbox/J-1.yaml", &format!("v{i}\n"));
            oids.push(commit_at(&mut store, &[card], "pas: J-1 edit", time));
        }
        let now = DateTime::from_timestamp(3500, 0).unwrap();
        let resolve = |spec: &str| store.resolve_rev(spec, now).map_err(|e| e.to_string());
        assert_eq!(resolve("HEAD~1"), Ok(oids[1]));
        assert_eq!(resolve(&oids[0].to_string()[..8]), Ok(oids[0]));
        assert_eq!(resolve("600 s ago"), Ok(oids[1]));
        assert_eq!(resolve("1 sec ago"), Ok(oids[2]));
        assert_eq!(resolve("40 min ago"), Ok(oids[0]));
        assert_eq!(resolve("1970-01-01T00:25:00Z"), Ok(oids[0]));
        assert!(resolve("1 hour ago").unwrap_err().contains("'1 hour ago'"));
        assert!(resolve("2 fortnights ago")
            .unwrap_err()
            .contains("fortnights"));
        assert!(resolve("no-such-branch")
            .unwrap_err()
            .contains("no-such-branch"));
        let past = store.files_at(oids[0], Path::new("work")).unwrap();
        assert_eq!(
            past,
            [(PathBuf::from("work/inbox/J-1.yaml"), b"v0\n".to_vec())]
        );
        assert!(store
            .files_at(oids[0], Path::new("nowhere"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn worker_batches_flushes_retries_and_shuts_down() {
        let (dir, store) = setup();
        let root = dir.path().to_path_buf();
        let worker = CommitWorker::spawn(store, Duration::from_millis(200), "pas".into());
        for i in 0..3 {
            let card = write(&root, &format!("work/inbox/J-{i}.yaml"), "t\n");
            let lines = vec![format!("pas: J-{i} new")];
            worker.send(Change {
                paths: vec![card.clone(), card],
                lines,
            });
        }
        let first = worker.flush().unwrap();
        let repo = Repository::open(&root).unwrap();
        let msg = repo
            .find_commit(first)
            .unwrap()
            .message()
            .unwrap()
            .to_string();
        assert_eq!(
            msg,
            "pas: 3 transitions\n\npas: J-0 new\npas: J-1 new\npas: J-2 new\n"
        );
        assert_eq!(tree_paths(&repo, first).len(), 3);
        // A held branch lock fails the commit; the change is kept and committed later.
        let lock = repo
            .path()
            .join(format!("{}.lock", repo.head().unwrap().name().unwrap()));
        fs::write(&lock, "").unwrap();
        let moved = mv(&root, "work/inbox/J-0.yaml", "work/done/J-0.yaml");
        worker.send(Change {
            paths: moved,
            lines: vec!["pas: J-0 inbox -> done".into()],
        });
        assert_eq!(worker.flush(), Some(first), "commit failed while locked");
        fs::remove_file(&lock).unwrap();
        let second = worker.flush().unwrap();
        assert_eq!(
            repo.find_commit(second).unwrap().message(),
            Some("pas: J-0 inbox -> done")
        );
        let card = write(&root, "work/inbox/J-9.yaml", "t\n");
        worker.send(Change {
            paths: vec![card],
            lines: vec!["pas: J-9 new".into()],
        });
        worker.shutdown();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.message(), Some("pas: J-9 new"));
        assert_eq!(head.parent_id(0).unwrap(), second);
        assert!(repo.statuses(None).unwrap().is_empty());
    }

    #[test]
    fn long_batches_are_capped() {
        let lines: Vec<String> = (0..2005).map(|i| format!("pas: J-{i} new")).collect();
        let msg = batch_message(&lines, 2005);
        assert!(msg.starts_with("pas: 2005 transitions\n\npas: J-0 new\n"));
        assert!(msg.ends_with("pas: J-1999 new\n... and 5 more\n"));
    }

    /// Submit `n` cards, then move each to assigned/ with new content: (time of the first
    /// commit, time of the 2n-path one).
    fn bulk(n: usize) -> (Duration, Duration) {
        let (dir, mut store) = setup();
        let root = dir.path();
        let card = |i| {
            write(
                root,
                &format!("work/inbox/J-{i}.yaml"),
                &format!("title: {i}\n"),
            )
        };
        let cards: Vec<PathBuf> = (0..n).map(card).collect();
        let start = Instant::now();
        store
            .commit_paths(&cards, "pas: new", "pas")
            .unwrap()
            .unwrap();
        let first = start.elapsed();
        let mut paths = Vec::new();
        for i in 0..n {
            let to = format!("work/assigned/a{}/J-{i}.yaml", i % 10);
            let moved = mv(root, &format!("work/inbox/J-{i}.yaml"), &to);
            fs::write(&moved[1], format!("title: {i}\npas: {{state: assigned}}\n")).unwrap();
            paths.extend(moved);
        }
        let start = Instant::now();
        let oid = store
            .commit_paths(&paths, "pas: moved", "pas")
            .unwrap()
            .unwrap();
        let second = start.elapsed();
        // A fresh handle reads every card back from the pack, and nothing is left dirty.
        let repo = Repository::open(root).unwrap();
        assert_eq!(tree_paths(&repo, oid).len(), n);
        let files = store.files_at(oid, Path::new("work/assigned/a3")).unwrap();
        assert!(files
            .iter()
            .all(|(_, bytes)| bytes.ends_with(b"{state: assigned}\n")));
        assert!(repo.statuses(None).unwrap().is_empty());
        (first, second)
    }

    #[test]
    fn big_batches_go_through_one_pack() {
        bulk(PACK_OVER + 50);
    }

    #[test]
    #[ignore = "timing; run with --release -- --ignored --nocapture"]
    fn bench_twenty_thousand_paths() {
        let (first, second) = bulk(10_000);
        println!("10,000 new cards: {first:?}; 20,000 paths (10,000 moves): {second:?}");
    }
}
