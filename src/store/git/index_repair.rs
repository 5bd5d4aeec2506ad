//! Bringing the real index back in line after a crash.
//!
//! pas updates the real index after each commit, for its own paths, so `git status` stays
//! clean. When index.lock is held (a user's `git add`, or a lock a `kill -9` left behind)
//! those updates wait in memory for a retry; a daemon killed meanwhile loses them, and the
//! index then disagrees with HEAD for files that match HEAD on disk: `git status` shows
//! phantom renames and deletions of cards that were committed fine. At start-up pas looks at
//! every path under `work/` where the index differs from HEAD and, only where the disk agrees
//! with HEAD, sets the index to HEAD. A path where the disk differs from HEAD is left alone:
//! that is a change not yet committed (the start-up scan commits it), or the user's own.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{DiffOptions, ObjectType, Oid};

use super::commit::IndexOp;
use super::disk::{read_file, OnDisk};
use super::{chain, git, GitError, GitStore};

impl GitStore {
    /// Sets the index to HEAD for every path under `dir` where the disk already holds what
    /// HEAD holds; returns how many entries that fixes. An index that cannot be written now
    /// (locked) keeps the fixes as a backlog the commit worker retries.
    pub fn repair_index_under(&mut self, dir: &Path) -> Result<usize, GitError> {
        let ops = self.index_repairs(dir)?;
        let fixed = ops.len();
        if fixed == 0 {
            return Ok(0);
        }
        tracing::info!(
            entries = fixed,
            "git index lagged behind HEAD (a crash before pas updated it): bringing it in line"
        );
        let mut backlog = std::mem::take(&mut self.index_backlog);
        backlog.extend(ops);
        if let Err(e) = self.write_index(&backlog) {
            tracing::warn!(error = %chain(&e), "git index not repaired yet; retrying");
            self.index_backlog = backlog;
        }
        Ok(fixed)
    }

    /// The index operations that make it agree with HEAD where the disk does.
    fn index_repairs(&self, dir: &Path) -> Result<BTreeMap<String, IndexOp>, GitError> {
        let doing = || "comparing the git index with HEAD".to_string();
        let Some(spec) = self.repo_rel(dir) else {
            return Ok(BTreeMap::new());
        };
        let head = self.head_commit().map_err(git(doing))?;
        let tree = head.map(|c| c.tree()).transpose().map_err(git(doing))?;
        let mut index = self.repo.index().map_err(git(doing))?;
        index.read(false).map_err(git(doing))?;
        let mut opts = DiffOptions::new();
        if !spec.is_empty() {
            opts.pathspec(format!("{spec}/"));
        }
        let diff = self
            .repo
            .diff_tree_to_index(tree.as_ref(), Some(&index), Some(&mut opts))
            .map_err(git(doing))?;
        let mut ops = BTreeMap::new();
        for delta in diff.deltas() {
            let (old, new) = (delta.old_file(), delta.new_file());
            let Some(rel) = old.path().or(new.path()).and_then(|p| p.to_str()) else {
                continue;
            };
            let Some(disk) = self.abs(rel) else { continue };
            let in_head = old.exists().then(|| old.id());
            match (in_head, read_file(&disk, rel)?) {
                (Some(id), OnDisk::File(bytes, mut entry)) if blob_id(&bytes)? == id => {
                    entry.id = id;
                    ops.insert(rel.to_string(), Some(entry));
                }
                (None, OnDisk::Gone) => {
                    ops.insert(rel.to_string(), None);
                }
                _ => {}
            }
        }
        Ok(ops)
    }
}

/// The id git gives these bytes as a blob.
fn blob_id(bytes: &[u8]) -> Result<Oid, GitError> {
    Oid::hash_object(ObjectType::Blob, bytes).map_err(git(|| "hashing a file".into()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use git2::Repository;

    /// `git status --porcelain` of the repository, as the git command prints it.
    fn status(root: &std::path::Path) -> String {
        let out = std::process::Command::new("git")
            .args(["--no-optional-locks", "status", "--porcelain"])
            .current_dir(root)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn an_index_left_behind_by_a_crash_is_brought_in_line_with_head() {
        let (dir, mut store) = setup();
        let root = dir.path().to_path_buf();
        let card = write(&root, "work/inbox/J-1.yaml", "title: a\n");
        commit_at(&mut store, &[card], "pas: J-1 new", 1_700_000_000);
        let user = write(&root, "work/inbox/U-1.yaml", "title: mine\n");
        // The index holds the old place of J-1 (as if the update after this commit was
        // lost), and the user's own staged card U-1.
        let moved = mv(&root, "work/inbox/J-1.yaml", "work/done/J-1.yaml");
        let sig = git2::Signature::now("pas", "pas@localhost").unwrap();
        {
            let repo = Repository::open(&root).unwrap();
            let mut index = repo.index().unwrap();
            index
                .add_path(std::path::Path::new("work/inbox/U-1.yaml"))
                .unwrap();
            index.write().unwrap();
            // Commit the move without touching the index, as a crash before sync would.
            let head = repo.head().unwrap().peel_to_commit().unwrap();
            let mut b = git2::build::TreeUpdateBuilder::new();
            let blob = repo.blob(b"title: a\n").unwrap();
            b.remove("work/inbox/J-1.yaml");
            b.upsert("work/done/J-1.yaml", blob, git2::FileMode::Blob);
            let tree = b.create_updated(&repo, &head.tree().unwrap()).unwrap();
            let tree = repo.find_tree(tree).unwrap();
            repo.commit(
                Some("HEAD"),
                &sig,
                &sig,
                "pas: J-1 inbox -> done",
                &tree,
                &[&head],
            )
            .unwrap();
        }
        assert!(moved[1].exists());
        assert!(
            status(&root).contains("work/done/J-1.yaml"),
            "{}",
            status(&root)
        );
        let fixed = store.repair_index_under(&root.join("work")).unwrap();
        assert_eq!(fixed, 2, "the stale entry removed, HEAD's entry added");
        assert_eq!(
            status(&root),
            "A  work/inbox/U-1.yaml\n",
            "the user's staged card stays"
        );
        drop(user);
        assert_eq!(store.repair_index_under(&root.join("work")).unwrap(), 0);
    }
}
