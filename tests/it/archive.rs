//! Archiving finished cards (SPEC section 2): cards leave `done/` and `failed/` for
//! `work/archive/YYYY/MM/DD/` in ordinary commits, and every reading command, `depends_on`
//! and a person's retry still find them; a hand-edited archive is reconciled like any
//! state folder.

use std::fs;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::support::workspace::{history, wait_until, Workspace, FAST, WAIT};

/// Archive a second after finishing, at most three cards per folder.
fn quick() -> Workspace {
    Workspace::with_config(&format!("{FAST}archive: {{after: 1s, keep: 3}}\n"))
}

/// Waits until card `id` lies in the archive; returns its folder (`archive/YYYY/MM/DD`).
fn wait_archived(ws: &Workspace, id: &str) -> String {
    wait_until(&format!("{id} archived"), WAIT, || match ws.state_of(id) {
        Some(p) if p.starts_with("archive/") => Ok(p),
        other => Err(format!("{other:?}")),
    })
}

/// Drops card `id` and finishes it with `pas done` (or `pas fail`) once the daemon has it.
fn finish(ws: &Workspace, id: &str, yaml: &str, done: bool) {
    ws.drop_card(id, yaml);
    ws.wait_recorded(id);
    ws.pas_ok(&[if done { "done" } else { "fail" }, id]);
}

fn yaml_names(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".yaml"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn finished_cards_move_to_the_archive_and_are_still_found() {
    let ws = quick();
    let _d = ws.serve_ready();
    for i in 0..4 {
        finish(&ws, &format!("arc-{i}"), "title: to be archived\n", i != 3);
    }
    let day = wait_archived(&ws, "arc-0");
    for i in 1..4 {
        wait_archived(&ws, &format!("arc-{i}"));
    }
    // An ordinary transition: history, commit line, database row.
    let line = format!("pas: arc-0 done -> {day}");
    ws.wait_commit_line(&line);
    ws.wait_commit_line(&format!("pas: arc-3 failed -> {day}"));
    ws.wait_db_count(
        &format!("SELECT count(*) FROM transitions WHERE job_id = 'arc-0' AND to_state = '{day}'"),
        1,
    );
    assert_eq!(
        history(&ws.card("arc-0")).last().unwrap(),
        &format!("done -> {day}")
    );
    // The commit holds the card in its new folder, as it was written there.
    let committed = ws.git(&["show", &format!("HEAD:work/{day}/arc-0.yaml")]);
    assert_eq!(
        committed,
        fs::read_to_string(ws.work(&format!("{day}/arc-0.yaml"))).unwrap()
    );
    // Every reading command finds it.
    let shown = ws.pas_ok(&["show", "arc-0"]);
    assert!(
        shown.starts_with(&format!("# work/{day}/arc-0.yaml")),
        "{shown}"
    );
    let v = ws.pas_json(&["show", "arc-0", "--json"]);
    assert_eq!(v["state"], "archived");
    let log = ws.pas_ok(&["log", "arc-0"]);
    assert!(log.contains(&format!("done -> {day}")), "{log}");
    let all = ws.pas_json(&["jobs", "--state", "archived", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["state"] == "archived"));
    let page = ws.pas_json(&[
        "jobs", "--state", "archived", "--limit", "2", "--offset", "1", "--json",
    ]);
    let ids: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["arc-2", "arc-1"]);
    let status = ws.pas_json(&["status", "--json"]);
    assert_eq!(status["jobs"]["archived"], 4, "{status}");
    assert_eq!(status["jobs"]["done"], 0, "{status}");
    // Live cards only, by default.
    assert_eq!(
        ws.pas_json(&["jobs", "--json"]).as_array().unwrap().len(),
        0
    );
}

#[test]
fn keep_bounds_the_live_folders_oldest_first() {
    let ws = Workspace::with_config(&format!("{FAST}archive: {{after: 1h, keep: 3}}\n"));
    let _d = ws.serve_ready();
    for i in 0..5 {
        finish(&ws, &format!("keep-{i}"), "title: k\n", true);
    }
    wait_archived(&ws, "keep-0");
    wait_archived(&ws, "keep-1");
    wait_until("done/ holds the three newest", WAIT, || {
        match yaml_names(&ws.work("done")) {
            3 => Ok(()),
            n => Err(format!("{n} cards in done/")),
        }
    });
    for i in 2..5 {
        assert_eq!(ws.state_of(&format!("keep-{i}")).as_deref(), Some("done"));
    }
}

#[test]
fn a_dependency_in_the_archive_counts_by_how_it_finished() {
    let ws = quick();
    let _d = ws.serve_ready();
    finish(&ws, "dep-ok", "title: done well\n", true);
    finish(&ws, "dep-bad", "title: failed\n", false);
    wait_archived(&ws, "dep-ok");
    wait_archived(&ws, "dep-bad");
    ws.register("a", &[], 5);
    ws.drop_card("child-ok", "title: c\ndepends_on: [dep-ok]\n");
    ws.drop_card("child-bad", "title: c\ndepends_on: [dep-bad]\n");
    ws.wait_state("child-ok", "assigned/a");
    ws.wait_card("waiting on its failed dependency", "child-bad", |c| {
        c["pas"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("dep-bad (failed, archived)"))
    });
}

/// After a restart the archive is on the shelf unread: what a waiting card depends on is
/// read when asked, pas's record beats a history forged while pas was down, and a card
/// dropped into the archive meanwhile is judged like one dropped under a running daemon.
#[test]
fn after_a_restart_the_archive_is_read_only_when_asked() {
    let ws = quick();
    let mut d = ws.serve_ready();
    finish(&ws, "rs-ok", "title: done well\n", true);
    finish(&ws, "rs-bad", "title: failed\n", false);
    let day = wait_archived(&ws, "rs-ok");
    let bad_day = wait_archived(&ws, "rs-bad");
    ws.wait_commit_line(&format!("pas: rs-bad failed -> {bad_day}"));
    assert!(d.stop().success());

    // While pas is down: rs-bad's history forged to say it came from done/, and a bad
    // card and a good one dropped into the archive by hand.
    let bad = ws.work(&format!("{bad_day}/rs-bad.yaml"));
    let text = fs::read_to_string(&bad).unwrap();
    let forged = text.replace("from: failed", "from: done");
    assert_ne!(text, forged, "{text}");
    fs::write(&bad, forged).unwrap();
    ws.drop_file(&format!("{day}/rs-junk.yaml"), b"title: [unclosed\n");
    ws.drop_file(&format!("{day}/rs-hand.yaml"), b"title: put here by hand\n");
    let ok_text = fs::read(ws.work(&format!("{day}/rs-ok.yaml"))).unwrap();
    ws.drop_file("done/rs-ok.yaml", &ok_text);

    let _d = ws.serve_ready();
    let reason = wait_until("the bad archived card rejected", WAIT, || {
        fs::read_to_string(ws.work("rejected/rs-junk.yaml.reason.txt")).map_err(|e| e.to_string())
    });
    assert!(reason.contains("rs-junk"), "{reason}");
    let reason = wait_until("the copy in done/ rejected", WAIT, || {
        fs::read_to_string(ws.work("rejected/rs-ok.yaml.reason.txt")).map_err(|e| e.to_string())
    });
    assert!(reason.contains("duplicate id rs-ok"), "{reason}");
    assert_eq!(ws.state_of("rs-ok"), Some(day.clone()));
    ws.register("a", &[], 5);
    ws.drop_card("rs-child-ok", "title: c\ndepends_on: [rs-ok]\n");
    ws.drop_card("rs-child-bad", "title: c\ndepends_on: [rs-bad]\n");
    ws.wait_state("rs-child-ok", "assigned/a");
    ws.wait_card("waiting on its failed dependency", "rs-child-bad", |c| {
        c["pas"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("rs-bad (failed, archived)"))
    });
    ws.wait_commit_line("pas: rs-bad pas: block restored from pas's record");
    let restored = wait_until("rs-bad's history restored", WAIT, || {
        let t = fs::read_to_string(&bad).map_err(|e| e.to_string())?;
        t.contains("from: failed")
            .then_some(t)
            .ok_or("not yet".to_string())
    });
    assert!(!restored.contains("from: done"), "{restored}");
    assert_eq!(ws.state_of("rs-hand"), Some(day.clone()));
    let status = ws.pas_json(&["status", "--json"]);
    assert_eq!(status["jobs"]["archived"], 3, "{status}");
    let waits = status["waiting"].as_array().unwrap();
    assert!(
        waits.iter().any(|w| w["id"] == "rs-child-bad"
            && w["reason"]
                .as_str()
                .unwrap()
                .contains("rs-bad (failed, archived)")),
        "pas status reads the outcome it needs: {status}"
    );
}

#[test]
fn an_archived_card_moved_back_to_the_inbox_is_a_retry() {
    let ws = quick();
    let _d = ws.serve_ready();
    finish(&ws, "again", "title: once more\n", false);
    let day = wait_archived(&ws, "again");
    fs::rename(
        ws.work(&format!("{day}/again.yaml")),
        ws.work("inbox/again.yaml"),
    )
    .unwrap();
    let c = ws.wait_card("retried from the archive", "again", |c| {
        history(c)
            .last()
            .is_some_and(|h| *h == format!("{day} -> inbox"))
    });
    assert_eq!(c["pas"]["state"], "inbox");
    ws.register("a", &[], 1);
    ws.wait_state("again", "assigned/a");
}

#[test]
fn a_hand_edited_archive_is_reconciled() {
    let ws = quick();
    let _d = ws.serve_ready();
    // Bad paths: not a day, not a card file, not deep enough.
    ws.drop_file("archive/2026/13/40/odd.yaml", b"title: odd\n");
    ws.drop_file("archive/loose.yaml", b"title: loose\n");
    for name in ["odd.yaml", "loose.yaml"] {
        let reason = wait_until(&format!("{name} rejected"), WAIT, || {
            fs::read_to_string(ws.work(&format!("rejected/{name}.reason.txt")))
                .map_err(|e| e.to_string())
        });
        assert!(
            reason.contains("work/archive/YYYY/MM/DD/<id>.yaml"),
            "{reason}"
        );
    }
    // A duplicate of an archived card put back into done/: the archived one stays.
    finish(&ws, "twin", "title: twin\n", true);
    let day = wait_archived(&ws, "twin");
    let text = fs::read(ws.work(&format!("{day}/twin.yaml"))).unwrap();
    ws.drop_file("done/twin.yaml", &text);
    let reason = wait_until("the copy in done/ rejected", WAIT, || {
        fs::read_to_string(ws.work("rejected/twin.yaml.reason.txt")).map_err(|e| e.to_string())
    });
    assert!(reason.contains("duplicate id twin"), "{reason}");
    assert_eq!(ws.state_of("twin"), Some(day));
}

#[test]
fn a_flat_done_is_migrated_in_steps_while_new_cards_are_assigned() {
    let ws = Workspace::with_config(&format!("{FAST}archive: {{after: 1s, keep: 1000}}\n"));
    let n = 2000;
    for i in 0..n {
        fs::write(
            ws.work(&format!("done/old-{i:04}.yaml")),
            "title: from an earlier pas\n",
        )
        .unwrap();
    }
    ws.register("a", &[], 1);
    let d = ws.serve();
    let started = Instant::now();
    ws.drop_card("fresh", "title: new work\n");
    ws.wait_state("fresh", "assigned/a");
    let assigned_in = started.elapsed();
    wait_until(
        "done/ emptied into the archive",
        Duration::from_secs(60),
        || match yaml_names(&ws.work("done")) {
            0 => Ok(()),
            k => Err(format!("{k} cards still in done/")),
        },
    );
    let log = fs::read_to_string(&d.log).unwrap();
    let steps = log.matches("finished cards moved to work/archive").count();
    assert!(
        steps >= 4,
        "{steps} archive steps logged for {n} cards (500 a step)"
    );
    assert!(
        assigned_in < Duration::from_secs(8),
        "a new card waited {assigned_in:?} behind the migration"
    );
    let archived = ws.pas_json(&["status", "--json"])["jobs"]["archived"].clone();
    assert_eq!(archived, n, "every old card archived");
}

#[test]
fn the_dashboard_done_column_pages_into_the_archive() {
    let ws = Workspace::with_config(&format!("{FAST}archive: {{after: 1h, keep: 1}}\n"));
    let d = ws.serve_ready();
    for id in ["col-0", "col-1", "col-2"] {
        finish(&ws, id, "title: shown\n", true);
    }
    finish(&ws, "col-f", "title: failed\n", false);
    wait_archived(&ws, "col-0");
    wait_archived(&ws, "col-1");
    let day = ws.state_of("col-0").unwrap();
    drop(d);
    let shared = pas::web::Shared {
        ws: pas::workspace::Workspace::at(&ws.root),
        hub: Arc::new(pas::events::Hub::new(0, None)),
        db: None,
        gateway_metrics: Arc::new(Default::default()),
    };
    let app = pas::dashboard::router(shared);
    let get = |uri: &str| -> serde_json::Value {
        use tower::ServiceExt;
        let req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        crate::support::http::block_on(async {
            let r = app.clone().oneshot(req).await.unwrap();
            assert_eq!(r.status(), 200, "{uri}");
            let b = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
            serde_json::from_slice(&b).unwrap()
        })
    };
    let first = get("/api/jobs?state=done&limit=2");
    assert_eq!(first["total"], 3, "{first}");
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["col-2", "col-1"]);
    let rest = get("/api/jobs?state=done&offset=2&limit=200");
    assert_eq!(ids(&rest), ["col-0"]);
    let j = &rest["jobs"][0];
    assert_eq!(j["state"], "done");
    assert_eq!(j["title"], "shown");
    assert_eq!(j["archived"].as_str(), day.strip_prefix("archive/"));
    let page = get("/api/jobs/col-0");
    assert_eq!(page["job"]["id"], "col-0", "{page}");
    assert!(page["text"].as_str().unwrap().contains("title: shown"));
    let status = get("/api/status");
    assert_eq!(status["jobs"]["archived"], 2, "{status}");
    assert_eq!(status["jobs"]["failed"], 1, "{status}");
}
