//! Helpers shared by the tests of the git module: a fresh repository, files written and moved
//! on disk, commits at chosen times, and the paths a commit holds.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Signature, Time, TreeWalkMode, TreeWalkResult};
use tempfile::TempDir;

use super::{GitStore, EMAIL};

/// A fresh repository with a store on it; the folder lives as long as the `TempDir`.
pub(super) fn setup() -> (TempDir, GitStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = GitStore::init(dir.path()).unwrap();
    (dir, store)
}

/// Write `text` to `root/rel`, creating folders; the absolute path.
pub(super) fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

/// Move `root/from` to `root/to`, creating folders: both absolute paths, as pas commits a move.
pub(super) fn mv(root: &Path, from: &str, to: &str) -> Vec<PathBuf> {
    let (from, to) = (root.join(from), root.join(to));
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::rename(&from, &to).unwrap();
    vec![from, to]
}

/// Commit as pas at a chosen time (seconds since the epoch); the commit must happen.
pub(super) fn commit_at(store: &mut GitStore, paths: &[PathBuf], msg: &str, time: i64) -> Oid {
    let sig = Signature::new("pas", EMAIL, &Time::new(time, 0)).unwrap();
    let sources = super::commit::disk_sources(paths);
    store.commit_as(&sources, msg, &sig).unwrap().unwrap()
}

/// Every blob path in the commit's tree.
pub(super) fn tree_paths(repo: &Repository, oid: Oid) -> Vec<String> {
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
