//! Tests of the history index: the one pass against the walk on a generated history, the
//! index read back, trusted only as far as it checks out, and kept up by the indexer.

use super::super::test_support::*;
use super::*;
use git2::{Repository, Signature, Time};
use std::fs;

#[test]
fn paths_map_to_cards() {
    assert_eq!(card_of("inbox/J-1.yaml"), Some("J-1"));
    assert_eq!(card_of("done/J-1.yaml"), Some("J-1"));
    assert_eq!(card_of("rejected/J-1.yaml"), Some("J-1"));
    assert_eq!(card_of("assigned/a/J-1.yaml"), Some("J-1"));
    assert_eq!(card_of("archive/2025/01/02/J-1.yaml"), Some("J-1"));
    assert_eq!(card_of("J-1.yaml"), None);
    assert_eq!(card_of("inbox/sub/J-1.yaml"), None);
    assert_eq!(card_of("inbox/.J-1.yaml.tmp"), None);
    assert_eq!(card_of("inbox/J-1.yaml.reason.txt"), None);
    assert_eq!(card_of("heartbeats/a.jsonl"), None);
    assert_eq!(card_of("inbox/.hidden.yaml"), None);
}

/// A deterministic sequence of small numbers.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A history of `n` commits as pas and a user make them: new cards one by one and in
/// batches, moves through assigned/ to done/ or failed/, rejections, edits in place, the
/// user's own commits (of cards and of other files), commits in the same second, ids that
/// are prefixes of others, and one merge. Returns the ids used.
fn generate(root: &Path, store: &mut GitStore, n: usize) -> Vec<String> {
    let mut rng = Lcg(7);
    let mut places: Vec<(String, String)> = Vec::new(); // (id, folder under work/)
    let mut ids = Vec::new();
    let mut time = 1_700_000_000;
    let mut next_id = 1;
    let made = |store: &GitStore| {
        let head = store.head_oid().unwrap();
        head.map_or(0, |h| store.commits_between(None, h).unwrap().len() as u64)
    };
    let mut i = 0;
    while i < 10 * n && (i % 20 != 0 || made(store) < n as u64) {
        i += 1;
        time += rng.next(3) as i64; // ties: several commits in one second
        let roll = rng.next(100);
        if places.is_empty() || roll < 25 {
            // New cards: one, or a batch whose message names each.
            let count = if rng.next(4) == 0 { 1 + rng.next(8) } else { 1 };
            let mut paths = Vec::new();
            let mut lines = Vec::new();
            for _ in 0..count {
                let id = format!("J-{next_id}");
                next_id += 1;
                paths.push(write(
                    root,
                    &format!("work/inbox/{id}.yaml"),
                    &format!("title: {id}\n"),
                ));
                lines.push(format!("pas: {id} new -> inbox"));
                places.push((id.clone(), "inbox".into()));
                ids.push(id);
            }
            let msg = match lines.as_slice() {
                [one] => one.clone(),
                _ => format!("pas: {} transitions\n\n{}\n", lines.len(), lines.join("\n")),
            };
            commit_at(store, &paths, &msg, time);
            continue;
        }
        let k = rng.next(places.len());
        let (id, from) = places[k].clone();
        let to = match (roll, from.as_str()) {
            (25..=44, "inbox") => format!("assigned/a{}", rng.next(3)),
            (25..=44, f) if f.starts_with("assigned/") => "done".into(),
            (45..=54, "inbox") => "rejected".into(),
            (45..=54, f) if f.starts_with("assigned/") => "failed".into(),
            (55..=69, _) => from.clone(), // an edit in place
            (70..=79, _) => {
                // The user's own commit, of a file that is no card (or of a card, with a
                // message that names no card).
                let paths = if rng.next(2) == 0 {
                    vec![write(root, "notes.txt", &format!("note {i}\n"))]
                } else {
                    let p = format!("work/{from}/{id}.yaml");
                    vec![write(root, &p, &format!("title: {id}\nnote: {i}\n"))]
                };
                let sig = Signature::new("me", "me@example.com", &Time::new(time, 0)).unwrap();
                let sources = super::super::commit::disk_sources(&paths);
                store.commit_as(&sources, "tidy up", &sig).unwrap();
                continue;
            }
            _ => continue,
        };
        if from == "rejected" || from == "done" || from == "failed" {
            continue;
        }
        if to == from {
            let p = write(
                root,
                &format!("work/{from}/{id}.yaml"),
                &format!("title: {id}\nedit: {i}\n"),
            );
            commit_at(store, &[p], &format!("pas: {id} edited"), time);
        } else {
            let paths = mv(
                root,
                &format!("work/{from}/{id}.yaml"),
                &format!("work/{to}/{id}.yaml"),
            );
            commit_at(store, &paths, &format!("pas: {id} {from} -> {to}"), time);
            places[k].1 = to;
        }
    }
    merge(root, store, time + 1);
    ids.push("M-1".into());
    ids.push("J-1000".into()); // never existed
    ids
}

/// A side branch that adds card M-1, merged into HEAD.
fn merge(root: &Path, store: &mut GitStore, time: i64) {
    let repo = Repository::open(root).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let sig = Signature::new("me", "me@example.com", &Time::new(time, 0)).unwrap();
    let blob = repo.blob(b"title: m\n").unwrap();
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert("work/inbox/M-1.yaml", blob, git2::FileMode::Blob);
    let side_tree = update.create_updated(&repo, &head.tree().unwrap()).unwrap();
    let side_tree = repo.find_tree(side_tree).unwrap();
    let side = repo
        .commit(None, &sig, &sig, "side: M-1 new", &side_tree, &[&head])
        .unwrap();
    let side = repo.find_commit(side).unwrap();
    let note = write(root, "notes.txt", "on main\n");
    let main = commit_at(store, &[note], "main: notes", time);
    let main = repo.find_commit(main).unwrap();
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert("work/inbox/M-1.yaml", blob, git2::FileMode::Blob);
    let merged = update.create_updated(&repo, &main.tree().unwrap()).unwrap();
    let merged = repo.find_tree(merged).unwrap();
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "Merge side",
        &merged,
        &[&main, &side],
    )
    .unwrap();
    let mut index = repo.index().unwrap();
    index.read_tree(&merged).unwrap();
    index.write().unwrap();
    write(root, "work/inbox/M-1.yaml", "title: m\n");
}

fn json(commits: &[CommitInfo]) -> String {
    serde_json::to_string_pretty(commits).unwrap()
}

fn walk(store: &GitStore, id: &str) -> String {
    json(&store.history_of(id).unwrap())
}

fn read(store: &GitStore, db: &Path, id: &str) -> (String, HistorySource) {
    let (commits, source) = store.card_history(Some(db), id).unwrap();
    (json(&commits), source)
}

#[test]
fn one_pass_and_index_agree_with_the_walk() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let ids = generate(root, &mut store, 300);
    let db = root.join("telemetry/pas.db");

    // The walk of every third card (it is what is slow), and of the special ones.
    let ids: Vec<String> = ids
        .into_iter()
        .enumerate()
        .filter(|(i, id)| i % 3 == 0 || ["J-1", "J-10", "M-1", "J-1000"].contains(&id.as_str()))
        .map(|(_, id)| id)
        .collect();
    let walked: HashMap<&String, String> = ids.iter().map(|id| (id, walk(&store, id))).collect();

    // No database: the one pass gives every card's history as the walk does, and so do
    // reads (one pass each: a sample of the cards).
    let pass = store.one_pass(None).unwrap();
    assert!(pass.walked >= 300, "{}", pass.walked);
    for (i, id) in ids.iter().enumerate() {
        let mut from_pass: Vec<CommitInfo> =
            pass.commits.iter().filter_map(|c| c.info(id)).collect();
        from_pass.reverse();
        assert_eq!(json(&from_pass), walked[id], "one pass, card {id}");
        if i % 10 == 0 {
            let (text, source) = read(&store, &db, id);
            assert_eq!(text, walked[id], "card {id}");
            assert!(matches!(source, HistorySource::Pass(_)), "{source:?}");
        }
    }
    assert!(!store.history_of("M-1").unwrap().is_empty());

    // Rebuilt: the index answers alone, the same.
    let done = rebuild(&store, &db).unwrap();
    assert_eq!(done.commits, pass.walked);
    assert_eq!(done.card_commits, pass.commits.len() as u64);
    for id in &ids {
        let (text, source) = read(&store, &db, id);
        assert_eq!(text, walked[id], "card {id}");
        assert_eq!(source, HistorySource::Index);
    }

    // Commits after the index's head are read from git on top of it.
    let paths = mv(root, "work/inbox/M-1.yaml", "work/done/M-1.yaml");
    commit_at(&mut store, &paths, "pas: M-1 inbox -> done", 1_800_000_000);
    let note = write(root, "notes.txt", "later\n");
    commit_at(&mut store, &[note], "user: notes", 1_800_000_001);
    let (text, source) = read(&store, &db, "M-1");
    assert_eq!(text, walk(&store, "M-1"));
    assert_eq!(source, HistorySource::IndexAndGit(2));
    assert_eq!(read(&store, &db, "J-1").0, walk(&store, "J-1"));
}

#[test]
fn an_index_that_does_not_check_out_is_not_used() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let ids = generate(root, &mut store, 60);
    let db = root.join("telemetry/pas.db");
    rebuild(&store, &db).unwrap();
    let id = ids
        .iter()
        .max_by_key(|id| store.history_of(id).unwrap().len())
        .unwrap()
        .clone();
    let want = walk(&store, &id);
    let conn = Connection::open(&db).unwrap();
    let passes = |store: &GitStore| {
        let (text, source) = read(store, &db, &id);
        assert_eq!(text, want);
        assert!(matches!(source, HistorySource::Pass(_)), "{source:?}");
    };

    // A row naming a commit git does not have, or with the wrong time.
    conn.execute(
        "UPDATE history_commits SET time = time + 1 WHERE seq = (SELECT MAX(seq) FROM history_cards WHERE job_id = ?1)",
        [&id],
    )
    .unwrap();
    passes(&store);
    rebuild(&store, &db).unwrap();
    assert_eq!(read(&store, &db, &id).1, HistorySource::Index);
    // Unreadable rows.
    conn.execute(
        "UPDATE history_cards SET lines = 'not json' WHERE job_id = ?1",
        [&id],
    )
    .unwrap();
    passes(&store);
    // A head that is not on HEAD's history (history rewritten, another repository).
    rebuild(&store, &db).unwrap();
    conn.execute(
        "UPDATE history_state SET head = '0123456789012345678901234567890123456789'",
        [],
    )
    .unwrap();
    passes(&store);
    conn.execute("UPDATE history_state SET head = 'not an oid'", [])
        .unwrap();
    passes(&store);
    // The tables gone.
    conn.execute_batch(
        "DROP TABLE history_cards; DROP TABLE history_commits; DROP TABLE history_state",
    )
    .unwrap();
    passes(&store);
    drop(conn);
    // The database not a database at all.
    for f in ["pas.db-wal", "pas.db-shm"] {
        let _ = fs::remove_file(root.join("telemetry").join(f));
    }
    fs::write(
        &db,
        b"this is not a database, just some bytes that are long enough",
    )
    .unwrap();
    passes(&store);
    // No database: one pass; `pas reindex` makes it anew.
    fs::remove_file(&db).unwrap();
    passes(&store);
    rebuild(&store, &db).unwrap();
    assert_eq!(read(&store, &db, &id), (want, HistorySource::Index));
}

#[test]
fn the_indexer_catches_up_and_rebuilds_what_does_not_check_out() {
    let (dir, mut store) = setup();
    let root = dir.path();
    let ids = generate(root, &mut store, 80);
    let db = root.join("telemetry/pas.db");
    let mut indexer = Indexer::new(db.clone());
    assert!(
        indexer.next_step().is_some(),
        "a first step is due at start"
    );
    indexer.step(&store);
    assert!(
        indexer.next_step().is_some(),
        "HEAD looked at again after a catch-up"
    );
    indexer.step(&store);
    assert!(indexer.next_step().is_none(), "caught up");
    let head = store.head_oid().unwrap().unwrap();
    let conn = Connection::open(&db).unwrap();
    let state = read_state(&conn).unwrap().unwrap();
    assert_eq!(state.head, head);
    for id in &ids {
        assert_eq!(
            read(&store, &db, id),
            (walk(&store, id), HistorySource::Index)
        );
    }
    // Each new commit is appended by the next step, a user's commit in between too.
    let note = write(root, "work/inbox/J-1.yaml", "title: J-1\nuser: edit\n");
    commit_at(&mut store, &[note], "user edits J-1", 1_800_000_000);
    let paths = mv(root, "work/inbox/J-1.yaml", "work/done/J-1.yaml");
    commit_at(&mut store, &paths, "pas: J-1 inbox -> done", 1_800_000_000);
    indexer.step(&store);
    assert_eq!(
        read(&store, &db, "J-1"),
        (walk(&store, "J-1"), HistorySource::Index)
    );
    let commits = read_state(&conn).unwrap().unwrap().commits;
    assert_eq!(commits, state.commits + 2);

    // A corrupt row: a new indexer (the daemon's next start) rebuilds the index.
    conn.execute(
        "UPDATE history_cards SET paths = '{' WHERE job_id = 'J-1'",
        [],
    )
    .unwrap();
    let mut indexer = Indexer::new(db.clone());
    indexer.step(&store);
    assert_eq!(
        read(&store, &db, "J-1"),
        (walk(&store, "J-1"), HistorySource::Index)
    );
    // Tables dropped under a running indexer: made again, rebuilt.
    conn.execute_batch("DROP TABLE history_cards").unwrap();
    let p = write(root, "work/done/J-1.yaml", "title: J-1\nagain: 1\n");
    commit_at(&mut store, &[p], "pas: J-1 edited", 1_800_000_010);
    indexer.step(&store);
    indexer.retry_at = None;
    indexer.step(&store);
    indexer.retry_at = None;
    indexer.step(&store);
    assert_eq!(
        read(&store, &db, "J-1"),
        (walk(&store, "J-1"), HistorySource::Index)
    );
}
