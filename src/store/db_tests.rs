//! Tests of the telemetry database (`db.rs`): migrations, the writer, readers.
use super::*;
use chrono::TimeZone;
use serde_json::json;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_750_000_000_000 + ms).unwrap()
}

fn transition(job: &str, n: u32, reason: &str) -> Record {
    Record::Transition(TransitionRow {
        job_id: job.into(),
        n,
        ts: at(i64::from(n)),
        from: "inbox".into(),
        to: "assigned/a".into(),
        agent: Some("a".into()),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
    })
}

fn event(seq: u64, kind: &str) -> Record {
    Record::Event(EventRow {
        seq,
        ts: at(seq as i64),
        kind: kind.into(),
        data: json!({"n": seq}),
    })
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telemetry/pas.db");
    (dir, path)
}

fn version_of(conn: &Connection) -> i64 {
    conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn migrations_are_numbered_without_gaps() {
    for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
        assert_eq!(*version as usize, i + 1);
    }
}

#[test]
fn open_creates_migrates_and_reopen_is_a_no_op() {
    let (_dir, path) = temp_db();
    let conn = open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(version_of(&conn), i64::from(SCHEMA_VERSION));
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    let conn = open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!((rows, version_of(&conn)), (1, i64::from(SCHEMA_VERSION)));
    assert_eq!(
        (max_seq(&conn).unwrap(), transition_count(&conn).unwrap()),
        (0, 0)
    );
}

#[test]
fn newer_database_is_refused_naming_path_and_versions() {
    let (_dir, path) = temp_db();
    open(&path)
        .unwrap()
        .execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    for err in [open(&path).unwrap_err(), open_read_only(&path).unwrap_err()] {
        let msg = err.to_string();
        assert!(matches!(err, DbError::TooNew { found: 99, .. }), "{err:?}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("99") && msg.contains(&SCHEMA_VERSION.to_string()),
            "{msg}"
        );
    }
}

#[test]
fn writer_stores_mixed_records_ignoring_duplicates() {
    let (_dir, path) = temp_db();
    let writer = TelemetryWriter::spawn(&path).unwrap();
    // 5000 transitions (500 jobs x 10, sent in reverse n order) and 5000 events.
    for i in 0..5000u32 {
        writer.send(transition(&format!("J-{}", i % 500), 9 - i / 500, "first"));
        writer.send(event(u64::from(i) + 1, "job.assigned"));
    }
    // Start-up replay resends: both duplicates must be ignored, the first rows kept.
    writer.send(transition("J-7", 3, "replayed"));
    writer.send(event(42, "job.replayed"));
    writer.flush();

    let conn = open_read_only(&path).unwrap().unwrap();
    assert_eq!(transition_count(&conn).unwrap(), 5000);
    assert_eq!(max_seq(&conn).unwrap(), 5000);
    let j7 = transitions_for(&conn, "J-7").unwrap();
    assert_eq!(
        j7.iter().map(|t| t.n).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        Record::Transition(j7[3].clone()),
        transition("J-7", 3, "first")
    );
    let counts = known_transition_counts(&conn).unwrap();
    assert_eq!((counts.len(), counts["J-499"]), (500, 10));

    let mut seen = Vec::new();
    loop {
        let page = events_since(&conn, seen.last().map_or(0, |e: &EventRow| e.seq), 1000).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 1000);
        seen.extend(page);
    }
    assert_eq!(seen.len(), 5000);
    assert!(seen.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    assert_eq!(Record::Event(seen[41].clone()), event(42, "job.assigned"));
    assert_eq!(events_since(&conn, 4998, 10).unwrap().len(), 2);
    writer.shutdown();
}

#[test]
fn shutdown_writes_pending_records() {
    let (_dir, path) = temp_db();
    let writer = TelemetryWriter::spawn(&path).unwrap();
    for seq in 1..=2000 {
        writer.send(event(seq, "agent.heartbeat"));
    }
    writer.send(event(u64::MAX, "beyond i64")); // refused by send, not by the batch
    writer.shutdown();
    assert_eq!(max_seq(&open(&path).unwrap()).unwrap(), 2000);
}

#[test]
fn read_only_missing_is_none_and_reads_while_writer_writes() {
    let (_dir, path) = temp_db();
    assert!(open_read_only(&path).unwrap().is_none());
    assert!(!path.exists(), "a read must not create the database");

    let writer = TelemetryWriter::spawn(&path).unwrap();
    writer.send(transition("J-1", 0, ""));
    writer.flush();
    let mut reader = open_read_only(&path).unwrap().unwrap();
    // A reader holding a snapshot open must not block the writer's commits (WAL).
    let snapshot = reader.transaction().unwrap();
    assert_eq!(transition_count(&snapshot).unwrap(), 1);
    writer.send(transition("J-1", 1, ""));
    let started = std::time::Instant::now();
    writer.flush();
    assert!(
        started.elapsed() < BUSY_TIMEOUT / 2,
        "writer waited on the reader"
    );
    assert_eq!(transition_count(&snapshot).unwrap(), 1);
    snapshot.finish().unwrap();
    assert_eq!(transition_count(&reader).unwrap(), 2);
    assert!(
        reader.execute("DELETE FROM transitions", []).is_err(),
        "read-only"
    );
    drop(reader);
    writer.shutdown();
    // The last connection checkpointed and removed the WAL; a reader still opens.
    assert!(!path.with_extension("db-wal").exists());
    assert_eq!(
        transitions_for(&open_read_only(&path).unwrap().unwrap(), "J-1")
            .unwrap()
            .len(),
        2
    );
}

#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn writer_throughput() {
    let (_dir, path) = temp_db();
    let writer = TelemetryWriter::spawn(&path).unwrap();
    let started = std::time::Instant::now();
    for i in 0..100_000u32 {
        writer.send(transition(&format!("J-{}", i / 10), i % 10, "timeout"));
    }
    writer.flush();
    let secs = started.elapsed().as_secs_f64();
    writer.shutdown();
    assert_eq!(transition_count(&open(&path).unwrap()).unwrap(), 100_000);
    println!(
        "100000 transitions in {secs:.3} s: {:.0} rows/s",
        100_000.0 / secs
    );
}
