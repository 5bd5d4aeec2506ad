//! The history index (pas issue 19): the daemon records each commit's cards in SQLite as it
//! commits, `pas log` reads them (and answers the same as the old walk of the whole log),
//! a missing or corrupt index is never trusted and `pas reindex` rebuilds it; and the
//! repository stays packed.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::support::workspace::{wait_until, Workspace, FAST};

/// `pas log ID --json`, read as pas reads it, or with `PAS_LOG_READ=walk` as pas read it
/// before the index (one walk of the whole log).
fn log_json(ws: &Workspace, id: &str, walk: bool) -> Value {
    let mut cmd = ws.cmd(&["log", id, "--json"]);
    if walk {
        cmd.env("PAS_LOG_READ", "walk");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pas log {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `pas log` answers as the walk does.
fn assert_log_as_walk(ws: &Workspace, id: &str) -> Value {
    let got = log_json(ws, id, false);
    assert_eq!(
        got,
        log_json(ws, id, true),
        "pas log {id} differs from the walk"
    );
    got
}

/// The index's head (`None`: no row, or no table).
fn index_head(ws: &Workspace) -> Option<String> {
    let path = ws.path("telemetry/pas.db");
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row("SELECT head FROM history_state", [], |r| r.get(0))
        .ok()
}

/// Waits until the index reaches HEAD.
fn wait_indexed(ws: &Workspace) {
    wait_until(
        "the history index to reach HEAD",
        crate::support::workspace::WAIT,
        || {
            let head = ws.head();
            match index_head(ws) {
                Some(h) if h == head => Ok(()),
                other => Err(format!("index at {other:?}, HEAD {head}")),
            }
        },
    );
}

fn rows(ws: &Workspace, id: &str) -> i64 {
    ws.db_count(&format!(
        "SELECT COUNT(*) FROM history_cards WHERE job_id = '{id}'"
    ))
}

fn open_rw(ws: &Workspace) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(ws.path("telemetry/pas.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

#[test]
fn the_daemon_indexes_each_commit_and_pas_log_reads_it() {
    let ws = Workspace::new();
    let mut d = ws.serve_ready();
    ws.drop_card("quick", "title: q\n");
    ws.wait_commit_line("pas: quick new -> inbox");
    ws.register("a", &[], 1);
    ws.wait_commit_line("pas: quick inbox -> assigned/a");
    ws.pas_ok(&["done", "quick"]);
    ws.wait_commit_line("pas: quick assigned/a -> done");
    // A card pas cannot read is rejected, and that commit is indexed too.
    ws.drop_file("inbox/bad.yaml", b"title: [unclosed\n");
    wait_until("bad.yaml rejected", crate::support::workspace::WAIT, || {
        ws.work("rejected/bad.yaml")
            .exists()
            .then_some(())
            .ok_or("not yet".to_string())
    });
    ws.wait_work_clean("the rejection committed");
    wait_indexed(&ws);

    // One row per commit that touched the card, as git counts them.
    let touching = ws.git_log(&["work/**/quick.yaml"]).len() as i64;
    assert!(touching >= 3, "{touching}");
    assert_eq!(rows(&ws, "quick"), touching);
    assert_eq!(
        rows(&ws, "bad"),
        ws.git_log(&["work/**/bad.yaml"]).len() as i64
    );
    assert!(rows(&ws, "bad") >= 1, "the rejection's commit");
    let log = assert_log_as_walk(&ws, "quick");
    assert_eq!(log.as_array().unwrap().len() as i64, touching);
    let bad = assert_log_as_walk(&ws, "bad");
    assert!(
        bad.to_string().contains("work/rejected/bad.yaml"),
        "the rejection's commit: {bad}"
    );
    d.stop();

    // A user's own commit while pas is down is indexed when it starts again.
    let card = ws.work("done/quick.yaml");
    let mut text = fs::read_to_string(&card).unwrap();
    text.push_str("# checked by hand\n");
    fs::write(&card, text).unwrap();
    ws.git(&["add", "work/done/quick.yaml"]);
    ws.git(&["commit", "-q", "-m", "review: quick checked by hand"]);
    let _d = ws.serve_ready();
    wait_indexed(&ws);
    assert_eq!(rows(&ws, "quick"), touching + 1);
    let log = assert_log_as_walk(&ws, "quick");
    assert_eq!(
        log[0]["lines"][0], "review: quick checked by hand",
        "newest first: {log}"
    );
}

#[test]
fn a_missing_or_corrupt_index_is_not_trusted_and_reindex_rebuilds_it() {
    let ws = Workspace::new();
    let mut d = ws.serve_ready();
    for id in ["c1", "c2", "c10"] {
        ws.drop_card(id, "title: c\n");
        ws.wait_commit_line(&format!("pas: {id} new -> inbox"));
    }
    ws.register("a", &[], 3);
    ws.wait_work_clean("assignments committed");
    wait_indexed(&ws);
    d.stop();
    let want: Vec<Value> = ["c1", "c2", "c10"]
        .iter()
        .map(|id| assert_log_as_walk(&ws, id))
        .collect();
    let same = |what: &str| {
        for (id, want) in ["c1", "c2", "c10"].iter().zip(&want) {
            assert_eq!(&log_json(&ws, id, false), want, "{what}: pas log {id}");
        }
    };

    // A row that does not match git: not trusted.
    open_rw(&ws)
        .execute(
            "UPDATE history_commits SET oid = '0000000000000000000000000000000000000001'
             WHERE seq = (SELECT MAX(seq) FROM history_cards WHERE job_id = 'c1')",
            [],
        )
        .unwrap();
    same("a row naming no commit");
    // The tables gone: one pass; `pas reindex` makes and fills them.
    open_rw(&ws)
        .execute_batch("DROP TABLE history_cards; DROP TABLE history_commits")
        .unwrap();
    same("the tables dropped");
    let said = ws.pas_ok(&["reindex"]);
    assert!(said.starts_with("indexed "), "{said}");
    assert!(said.contains(" ms"), "{said}");
    assert_eq!(index_head(&ws), Some(ws.head()));
    assert!(rows(&ws, "c1") >= 2);
    same("after pas reindex");
    // No database at all (a fresh clone): one pass; reindex makes the database.
    for f in ["pas.db", "pas.db-wal", "pas.db-shm"] {
        let _ = fs::remove_file(ws.path(&format!("telemetry/{f}")));
    }
    same("no database");
    let json = ws.pas_json(&["reindex", "--json"]);
    assert!(json["commits"].as_u64().unwrap() >= 5, "{json}");
    // The three cards (and the registration work/registry/a.yaml, which `pas log a`
    // has always listed).
    assert!(json["cards"].as_u64().unwrap() >= 3, "{json}");
    same("after pas reindex on a fresh database");
    // A corrupt index found by the daemon at start is rebuilt.
    open_rw(&ws)
        .execute("UPDATE history_cards SET paths = 'not json'", [])
        .unwrap();
    same("unreadable rows");
    let d = ws.serve_ready();
    wait_until(
        "the daemon to rebuild the index",
        crate::support::workspace::WAIT,
        || {
            let bad = ws.db_count("SELECT COUNT(*) FROM history_cards WHERE paths = 'not json'");
            (bad == 0).then_some(()).ok_or(bad.to_string())
        },
    );
    same("after the daemon's rebuild");
    assert!(
        d.log_text()
            .contains("history index: catching up with HEAD"),
        "a log line per step"
    );
}

#[test]
fn repacks_keep_loose_objects_bounded() {
    let config = format!(
        "{FAST}git: {{commit_window_ms: 20, maintenance: {{max_loose_objects: 60, check_every_commits: 10}}}}\n"
    );
    let config = config.replace("git: {commit_window_ms: 20}\n", "");
    let ws = Workspace::with_config(&config);
    let d = ws.serve_ready();
    let before = ws.commit_count();
    // One commit per card: each waits for the last one's commit.
    for i in 0..120 {
        let head = ws.head();
        ws.drop_card(&format!("r{i}"), "title: r\n");
        wait_until("the card's commit", crate::support::workspace::WAIT, || {
            let now = ws.head();
            (now != head).then_some(()).ok_or(now)
        });
    }
    ws.wait_work_clean("every card committed");
    let made = ws.commit_count() - before;
    assert!(made >= 120, "only {made} commits");
    let loose = || -> usize {
        fs::read_dir(ws.path(".git/objects"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().len() == 2)
            // (A repack may remove a folder between the listing and the read.)
            .map(|e| fs::read_dir(e.path()).map_or(0, |d| d.count()))
            .sum()
    };
    // Some 5 objects per commit: unpacked they would be hundreds.
    wait_until("loose objects bounded", Duration::from_secs(20), || {
        let n = loose();
        (n < 150).then_some(()).ok_or(n.to_string())
    });
    assert!(
        d.log_text().contains("repository repacked"),
        "no repack logged"
    );
    let status = ws.pas_json(&["status", "--json"]);
    let repo = &status["repo"];
    assert!(repo["packs"]["count"].as_u64().unwrap() >= 1, "{repo}");
    assert!(repo["loose"]["objects"].as_u64().unwrap() < 150, "{repo}");
    assert!(repo["bytes"].as_u64().unwrap() > 0, "{repo}");
    assert!(repo["last_repack"].is_string(), "{repo}");
    // Every commit is still readable, and the history complete.
    ws.git(&["fsck", "--no-progress", "--connectivity-only"]);
    assert_log_as_walk(&ws, "r0");
    assert_log_as_walk(&ws, "r119");
    let (dash, _) = ws.addresses();
    let metrics = crate::support::http::get(&format!("http://{dash}/metrics")).body;
    assert!(metrics.contains("pas_repo_packs "), "{metrics}");
    assert!(metrics.contains("pas_repo_loose_objects "), "{metrics}");
}
