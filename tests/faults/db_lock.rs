//! The telemetry database locked by another process (a script's long `BEGIN EXCLUSIVE`, a
//! backup): the board does not wait for it, pas says the database is locked, and every
//! row arrives once the lock is released.

use std::time::{Duration, Instant};

use crate::fixture::Workspace;
use crate::{consistent_at_rest, rows_match_history, serial, stores_intact, wait_log};

#[test]
fn a_locked_database_delays_rows_but_loses_none_and_blocks_no_card() {
    let _serial = serial();
    let ws = Workspace::new();
    ws.register("a", &[], 20);
    let mut d = ws.serve_ready();
    let rows = |ws: &Workspace| ws.db_count("SELECT count(*) FROM transitions");
    let before = rows(&ws);

    let db = rusqlite::Connection::open(ws.path("telemetry/pas.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();

    // The board goes on: cards are assigned, finished and committed meanwhile.
    let ids: Vec<String> = (0..8).map(|i| format!("db-{i}")).collect();
    for id in &ids {
        ws.drop_card(id, &format!("title: {id}\n"));
    }
    for id in &ids {
        ws.wait_assigned(id, "a");
    }
    ws.pas_ok(&["done", "db-0"]);
    ws.wait_state("db-0", "done");
    ws.wait_commit_line("pas: db-0 assigned/a -> done");
    // Reading commands still read (WAL: a writer's lock does not stop readers).
    let status = ws.pas_json(&["status", "--json"]);
    assert_eq!(status["jobs"]["assigned"], 7, "{status}");
    assert_eq!(
        rows(&ws),
        before,
        "nothing can be written while the lock is held"
    );

    // pas says what is wrong once its busy timeout (5 s) has passed.
    let line = wait_log(
        &d,
        &[
            "telemetry database",
            "is locked by another process",
            "pas keeps the rows",
        ],
        Duration::from_secs(15),
    );
    assert!(line.contains("pas.db"), "the file is named: {line}");
    while locked.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(100));
    }
    d.assert_running();

    db.execute_batch("COMMIT").unwrap();
    drop(db);
    rows_match_history(&ws, &ids);
    for id in &ids {
        let sql = format!(
            "SELECT count(*) FROM events WHERE kind = 'job.assigned' AND data LIKE '%\"{id}\"%'"
        );
        ws.wait_db_count(&sql, 1);
    }
    ws.wait_db_count(
        "SELECT count(*) FROM events WHERE kind = 'job.done' AND data LIKE '%\"db-0\"%'",
        1,
    );
    wait_log(
        &d,
        &["telemetry rows written after the fault cleared"],
        Duration::from_secs(10),
    );
    ws.wait_work_clean("git status -- work clean");
    assert!(d.stop().success());
    consistent_at_rest(&ws, &ids);
    stores_intact(&ws);
}
