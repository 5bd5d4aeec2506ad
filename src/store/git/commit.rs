//! Writing commits: [`GitStore::commit_paths`] and what it needs.
//!
//! A commit holds exactly the paths pas names, each from a [`Source`]: read from disk (by
//! [`disk`](super::disk), which never follows a symbolic link), or the text the daemon knew at
//! the transition, or known to be absent then. Snapshots exist because a card may move on
//! before the worker commits: reading the disk then would give the commit saying
//! `q1 inbox -> assigned/a` a tree where q1 is already elsewhere. Each path's blob is applied
//! to HEAD's tree; big batches are written as one pack instead of thousands of loose objects.
//! Afterwards the real index is updated for those paths only, so `git status` shows them
//! clean (or, for a snapshot the disk no longer matches, re-hashes the file and tells the
//! truth) and the user's own staged work is left alone.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::build::TreeUpdateBuilder;
use git2::{Commit, FileMode, IndexEntry, ObjectType, Oid, Repository, Signature, Tree};

use super::{chain, git, GitError, GitStore, EMAIL};

/// Batches touching more paths than this store their objects as one pack, not loose files.
pub(super) const PACK_OVER: usize = 256;

/// Where the content committed at a path comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// Read the file at commit time (added if present, removed if gone).
    Disk,
    /// This text, as the sender knew it at the transition; the disk is not read for the tree.
    Text(Arc<str>),
    /// The path was absent at the transition: removed from the tree if HEAD has it.
    Absent,
}

/// What a commit does with one path.
pub(super) enum Step {
    /// Put this blob (`id`, with `mode`) in the tree; the same entry goes to the real index.
    Put(IndexEntry),
    /// Remove the path from the tree; from the real index too when `unindex` (when the file
    /// is back on disk the index entry is left for a later change to fix).
    Remove {
        /// Whether the real index drops the path.
        unindex: bool,
    },
}

/// The paths of one commit, relative to the work tree, and what happens to each.
pub(super) type Staged = Vec<(String, Step)>;

/// An index operation waiting for the real index: add this entry, or remove the path.
pub(super) type IndexOp = Option<IndexEntry>;

/// Every path read from disk at commit time, as `commit_paths` commits them.
pub(super) fn disk_sources(paths: &[PathBuf]) -> BTreeMap<PathBuf, Source> {
    paths.iter().map(|p| (p.clone(), Source::Disk)).collect()
}

impl GitStore {
    /// Commit exactly `paths` (a path that exists is added from disk, a missing one removed)
    /// on HEAD, as `author` <pas@localhost>. Nothing else enters the commit, and the real
    /// index is updated for these paths only, so `git status` shows them clean while the
    /// user's staged and unstaged changes elsewhere survive. Paths outside the workspace are
    /// skipped with a warning, and so is a path that is a symbolic link or lies under one:
    /// pas never follows a link (a hostile one may point outside the tree; pas moves such cards
    /// to `work/rejected/`). `Ok(None)` (no commit) when the tree would not change.
    pub fn commit_paths(
        &mut self,
        paths: &[PathBuf],
        message: &str,
        author: &str,
    ) -> Result<Option<Oid>, GitError> {
        self.commit_sources(&disk_sources(paths), message, author)
    }

    /// Like [`commit_paths`](Self::commit_paths), each path taken from its [`Source`]: a
    /// snapshot's text is committed whatever the disk holds now (so it is fine even where a
    /// link now stands: nothing is read through it), an absent path is removed.
    pub(super) fn commit_sources(
        &mut self,
        sources: &BTreeMap<PathBuf, Source>,
        message: &str,
        author: &str,
    ) -> Result<Option<Oid>, GitError> {
        let sig = Signature::now(author, EMAIL).map_err(git(|| "making the signature".into()))?;
        self.commit_as(sources, message, &sig)
    }

    pub(super) fn commit_as(
        &mut self,
        sources: &BTreeMap<PathBuf, Source>,
        message: &str,
        sig: &Signature<'_>,
    ) -> Result<Option<Oid>, GitError> {
        let (oid, staged) = self.write_commit(sources, message, sig)?;
        self.sync_index(staged);
        Ok(oid)
    }

    fn write_commit(
        &self,
        sources: &BTreeMap<PathBuf, Source>,
        message: &str,
        sig: &Signature<'_>,
    ) -> Result<(Option<Oid>, Staged), GitError> {
        let doing = || format!("committing {} path(s)", sources.len());
        let head = self.head_commit().map_err(git(doing))?;
        let base = head.as_ref().map(|c| c.tree_id());
        let objects = self.repo.path().join("objects");
        let (tree, base, staged) = match objects.to_str().filter(|_| sources.len() > PACK_OVER) {
            // Thousands of loose files are slow to create, and git probes the disk before each
            // write: put the blobs in a memory-only odb, only then let it see the repository's
            // objects (to build the trees), and store what is new as one pack.
            Some(objects) => {
                let odb = git2::Odb::new().map_err(git(doing))?;
                odb.add_new_mempack_backend(1000).map_err(git(doing))?;
                let staged = self.stage(sources, |bytes| odb.write(ObjectType::Blob, bytes))?;
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
                let staged = self.stage(sources, |bytes| self.repo.blob(bytes))?;
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
        for (_, step) in staged {
            if let Step::Put(entry) = step {
                pack.insert_object(entry.id, None)?;
            }
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

    /// Make the real index agree with what we committed, for our paths only. When it cannot
    /// be written (a user holds index.lock), the operations wait for the next commit: only
    /// the index gets them then, never the tree, so a later commit holds only its own paths.
    fn sync_index(&mut self, staged: Staged) {
        let mut ops = std::mem::take(&mut self.index_backlog);
        for (rel, step) in staged {
            match step {
                Step::Put(entry) => ops.insert(rel, Some(entry)),
                Step::Remove { unindex: true } => ops.insert(rel, None),
                // The file is back on disk: an older operation must not touch it either.
                Step::Remove { unindex: false } => ops.remove(&rel),
            };
        }
        let written = self.write_index(&ops);
        if written.is_ok() {
            self.index_caught_up();
        }
        if let Err(e) = written {
            let error = chain(&e);
            if self.index_backlog_since.is_none() {
                let hint = self.fault_hint(&e).unwrap_or_else(|| "retrying".into());
                tracing::warn!(%error, "git index not updated (the commit itself is made; \
                    `git status` lags until the index is): {hint}");
                self.index_backlog_since = Some(std::time::Instant::now());
            }
            self.index_backlog = ops;
        }
    }

    /// Whether index operations wait for a retry (the index was locked).
    pub(super) fn index_pending(&self) -> bool {
        !self.index_backlog.is_empty()
    }

    /// Tries the waiting index operations again, with no commit; true when none is left.
    pub(super) fn retry_index(&mut self) -> bool {
        self.clear_stale_locks();
        let ops = std::mem::take(&mut self.index_backlog);
        match self.write_index(&ops) {
            Ok(()) => {
                self.index_caught_up();
                true
            }
            Err(e) => {
                tracing::debug!(error = %chain(&e), "git index still locked");
                self.index_backlog = ops;
                false
            }
        }
    }

    /// The index was written: a lag behind HEAD, if there was one, is over.
    fn index_caught_up(&mut self) {
        if let Some(since) = self.index_backlog_since.take() {
            tracing::info!(
                after_ms = since.elapsed().as_millis() as u64,
                "git index updated: git status agrees with HEAD again"
            );
        }
    }

    pub(super) fn write_index(&self, ops: &BTreeMap<String, IndexOp>) -> Result<(), GitError> {
        if ops.is_empty() {
            return Ok(());
        }
        let doing = || "updating the git index".to_string();
        // Read afresh each time (it holds what other processes, a user's `git add`, wrote
        // since) and dropped after: the repository's own cached copy would keep a parsed
        // entry per tracked file in memory for good, some 13 MB at 100,000 files.
        let mut index = git2::Index::open(&self.repo.path().join("index")).map_err(git(doing))?;
        for (rel, op) in ops {
            match op {
                Some(entry) => index.add(entry),
                None => index.remove_path(Path::new(rel)),
            }
            .map_err(git(doing))?;
        }
        index.write().map_err(git(doing))
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
    for (rel, step) in staged {
        if let Step::Put(entry) = step {
            let mode = match entry.mode {
                0o100755 => FileMode::BlobExecutable,
                0o120000 => FileMode::Link,
                _ => FileMode::Blob,
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use git2::Status;
    use std::fs;
    use std::time::{Duration, Instant};

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
