//! Tests of snapshots: commits hold what a card was at its transition, not what the disk
//! holds when the worker gets to it, so a card that moves on within the commit window does not
//! vanish from (or jump ahead in) the commit whose message names the earlier move. The real
//! index must still tell the truth about the disk.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::{Oid, Repository, Status};

use super::commit::{Source, PACK_OVER};
use super::test_support::*;
use super::{Change, CommitWorker};

/// The text of `rel` in the commit's tree.
fn text_at(repo: &Repository, oid: Oid, rel: &str) -> String {
    let tree = repo.find_commit(oid).unwrap().tree().unwrap();
    let entry = tree.get_path(Path::new(rel)).unwrap();
    let blob = repo.find_blob(entry.id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

fn text(s: &str) -> Source {
    Source::Text(Arc::from(s))
}

#[test]
fn text_snapshots_are_committed_whatever_the_disk_holds() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let moved_on = write(root, "work/inbox/J-1.yaml", "title: edited since\n");
    let same = write(root, "work/inbox/J-2.yaml", "title: same\n");
    let gone = root.join("work/assigned/a/J-3.yaml");
    let sources = BTreeMap::from([
        (moved_on, text("title: at the move\n")),
        (same, text("title: same\n")),
        (gone, text("title: moved on\n")),
    ]);
    let oid = store
        .commit_sources(&sources, "pas: 3 transitions", "pas")
        .unwrap()
        .unwrap();
    let repo = Repository::open(root).unwrap();
    assert_eq!(
        text_at(&repo, oid, "work/inbox/J-1.yaml"),
        "title: at the move\n"
    );
    assert_eq!(
        text_at(&repo, oid, "work/assigned/a/J-3.yaml"),
        "title: moved on\n"
    );
    // The index holds the snapshots; git hashes the files whose content differs to say so.
    let status = |rel: &str| repo.status_file(Path::new(rel)).unwrap();
    assert_eq!(status("work/inbox/J-1.yaml"), Status::WT_MODIFIED);
    assert_eq!(status("work/inbox/J-2.yaml"), Status::CURRENT);
    assert_eq!(status("work/assigned/a/J-3.yaml"), Status::WT_DELETED);
    let index = repo.index().unwrap();
    let entry = |rel: &str| index.get_path(Path::new(rel), 0).unwrap();
    assert_ne!(entry("work/inbox/J-2.yaml").mtime.seconds(), 0, "stat kept");
    assert_eq!(entry("work/inbox/J-1.yaml").file_size, 0, "no stat data");
    // Once the disk catches up, git sees it clean without pas committing anything.
    fs::write(root.join("work/inbox/J-1.yaml"), "title: at the move\n").unwrap();
    let repo = Repository::open(root).unwrap();
    assert_eq!(
        repo.status_file(Path::new("work/inbox/J-1.yaml")).unwrap(),
        Status::CURRENT
    );
}

/// A snapshot for a path that is now a link is committed as text; the link is not read.
#[cfg(unix)]
#[test]
fn a_snapshot_where_a_link_now_stands_reads_nothing_through_it() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let outside = tempfile::tempdir().unwrap();
    let secret = write(outside.path(), "secret.yaml", "token: SECRET\n");
    fs::create_dir_all(root.join("work/inbox")).unwrap();
    let card = root.join("work/inbox/J-1.yaml");
    std::os::unix::fs::symlink(&secret, &card).unwrap();
    let sources = BTreeMap::from([(card, text("title: a\n"))]);
    let oid = store
        .commit_sources(&sources, "pas: J-1 new", "pas")
        .unwrap()
        .unwrap();
    let repo = Repository::open(root).unwrap();
    assert_eq!(text_at(&repo, oid, "work/inbox/J-1.yaml"), "title: a\n");
    let leaked = Oid::hash_object(git2::ObjectType::Blob, b"token: SECRET\n").unwrap();
    assert!(repo.find_blob(leaked).is_err(), "outside file stored");
}

#[test]
fn absent_snapshots_remove_paths_without_reading_them() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let back = write(root, "work/inbox/J-1.yaml", "title: a\n");
    let gone = write(root, "work/inbox/J-2.yaml", "title: b\n");
    let kept = write(root, "work/inbox/J-3.yaml", "title: c\n");
    let all = [back.clone(), gone.clone(), kept];
    store.commit_paths(&all, "setup", "pas").unwrap().unwrap();
    // J-1 is on disk again (read, it would stay in the tree); J-2 is gone for good.
    fs::remove_file(&gone).unwrap();
    let sources = BTreeMap::from([(back, Source::Absent), (gone, Source::Absent)]);
    let oid = store
        .commit_sources(&sources, "pas: 2 moved away", "pas")
        .unwrap()
        .unwrap();
    let repo = Repository::open(root).unwrap();
    assert_eq!(tree_paths(&repo, oid), ["work/inbox/J-3.yaml"]);
    // J-2 leaves the index; J-1's entry is left for the change that brought it back.
    let index = repo.index().unwrap();
    assert!(index
        .get_path(Path::new("work/inbox/J-2.yaml"), 0)
        .is_none());
    assert!(index
        .get_path(Path::new("work/inbox/J-1.yaml"), 0)
        .is_some());
    // Removing what HEAD lacks changes nothing.
    let sources = BTreeMap::from([(root.join("work/inbox/J-9.yaml"), Source::Absent)]);
    assert_eq!(
        store.commit_sources(&sources, "no-op", "pas").unwrap(),
        None
    );
}

#[test]
fn big_batches_of_snapshots_go_through_one_pack() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let n = PACK_OVER + 10;
    let sources: BTreeMap<PathBuf, Source> = (0..n)
        .map(|i| {
            let path = root.join(format!("work/inbox/J-{i}.yaml"));
            (path, text(&format!("title: {i}\n")))
        })
        .collect();
    let oid = store
        .commit_sources(&sources, "pas: new", "pas")
        .unwrap()
        .unwrap();
    let repo = Repository::open(root).unwrap();
    assert_eq!(tree_paths(&repo, oid).len(), n);
    assert_eq!(text_at(&repo, oid, "work/inbox/J-7.yaml"), "title: 7\n");
}

/// pas moves q1 inbox -> assigned/a and the agent moves it on to done/ before the worker
/// commits: each commit still shows q1 where its message says it went.
#[test]
fn each_commit_shows_the_card_where_its_message_says() {
    let (dir, store) = setup();
    let root = dir.path().to_path_buf();
    let worker = CommitWorker::spawn(store, Duration::from_secs(60), "pas".into());
    let snap = |rel: &str, text: Option<&str>| (root.join(rel), text.map(Arc::from));
    let change = |snapshots, line: &str| Change {
        snapshots,
        lines: vec![line.to_string()],
        ..Default::default()
    };
    let (inbox, assigned, done) = (
        "work/inbox/q1.yaml",
        "work/assigned/a/q1.yaml",
        "work/done/q1.yaml",
    );
    write(&root, inbox, "title: q\n");
    worker.send(change(vec![snap(inbox, Some("title: q\n"))], "pas: q1 new"));
    let first = worker.flush().unwrap();
    // pas moves q1 and stamps it; 20 ms later the agent moves it on, before any commit.
    mv(&root, inbox, assigned);
    let v2 = "title: q\npas: {state: assigned}\n";
    fs::write(root.join(assigned), v2).unwrap();
    worker.send(change(
        vec![snap(inbox, None), snap(assigned, Some(v2))],
        "pas: q1 inbox -> assigned/a",
    ));
    mv(&root, assigned, done);
    let v3 = "title: q\npas: {state: done}\n";
    fs::write(root.join(done), v3).unwrap();
    let second = worker.flush().unwrap();
    worker.send(change(
        vec![snap(assigned, None), snap(done, Some(v3))],
        "pas: q1 assigned/a -> done",
    ));
    let third = worker.flush().unwrap();
    let repo = Repository::open(&root).unwrap();
    let commit = |oid| repo.find_commit(oid).unwrap();
    assert_eq!(
        commit(second).message(),
        Some("pas: q1 inbox -> assigned/a")
    );
    assert_eq!(commit(second).parent_id(0).unwrap(), first);
    assert_eq!(tree_paths(&repo, second), [assigned]);
    assert_eq!(text_at(&repo, second, assigned), v2);
    assert_eq!(commit(third).message(), Some("pas: q1 assigned/a -> done"));
    assert_eq!(commit(third).parent_id(0).unwrap(), second);
    assert_eq!(tree_paths(&repo, third), [done]);
    assert_eq!(text_at(&repo, third, done), v3);
    // Both moves within one window: one commit, both lines, q1 where the last one put it;
    // a later disk path overrides the snapshot of the same path.
    mv(&root, done, inbox);
    worker.send(change(
        vec![snap(done, None), snap(inbox, Some("title: q\n"))],
        "pas: q1 done -> inbox",
    ));
    mv(&root, inbox, assigned);
    fs::write(root.join(assigned), v2).unwrap();
    worker.send(change(
        vec![snap(inbox, None), snap(assigned, Some("stale\n"))],
        "pas: q1 inbox -> assigned/a",
    ));
    worker.send(Change {
        paths: vec![root.join(assigned)],
        ..Default::default()
    });
    let fourth = worker.flush().unwrap();
    let msg = commit(fourth).message().unwrap().to_string();
    assert_eq!(
        msg,
        "pas: q1 done -> inbox, +1 more\n\npas: q1 done -> inbox\npas: q1 inbox -> assigned/a\n"
    );
    assert_eq!(tree_paths(&repo, fourth), [assigned]);
    assert_eq!(text_at(&repo, fourth, assigned), v2);
    worker.shutdown();
    assert!(repo.statuses(None).unwrap().is_empty(), "work tree clean");
}
